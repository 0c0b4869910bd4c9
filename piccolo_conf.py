"""Lets the ``piccolo`` CLI run from the repository root; the real module is in the package."""

from chatrt.db.piccolo_conf import APP_REGISTRY, DB

__all__ = ["APP_REGISTRY", "DB"]
