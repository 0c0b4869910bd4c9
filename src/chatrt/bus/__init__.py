"""The event bus and its memory and Redis implementations."""
