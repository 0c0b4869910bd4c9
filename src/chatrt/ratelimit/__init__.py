"""Rate limits that hold across instances: per client IP, per user, per sign-in target."""
