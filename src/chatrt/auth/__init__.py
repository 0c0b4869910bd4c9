"""Registration, sign-in, sessions and CSRF."""
