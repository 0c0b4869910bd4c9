"""Piccolo's configuration module (``PICCOLO_CONF=chatrt.db.piccolo_conf``).

Piccolo's CLI and migration runner import this by name, so the engine is built here from the
same settings the app uses.
"""

from __future__ import annotations

import os

from piccolo.conf.apps import AppRegistry

from chatrt.db.engine import make_engine
from chatrt.settings import Settings

DB = make_engine(Settings.from_env(os.environ).db)
APP_REGISTRY = AppRegistry(apps=["chatrt.db.piccolo_app"])
