"""Health checks, JSON logs, the request log and request ids."""
