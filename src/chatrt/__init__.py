"""chatrt: a real-time AI chat backend."""

__version__ = "0.1.0"
