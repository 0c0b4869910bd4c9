"""Health checks, and later metrics and logging."""
