"""Per-user token usage: daily budgets (429 ``quota_exceeded``) and ``GET /api/usage``."""
