"""Apply the migrations in ``migrations/`` with Piccolo's own runner."""

from __future__ import annotations

import os

from piccolo.apps.migrations.commands.forwards import run_forwards

CONF_MODULE = "chatrt.db.piccolo_conf"


async def apply_migrations() -> None:
    """Run every pending migration against ``CHATRT_DATABASE_URL``; raise if one fails.

    Piccolo finds its engine through the ``PICCOLO_CONF`` module, which reads the same
    environment as :class:`~chatrt.settings.Settings`; only a CLI entry point calls this.
    """
    os.environ["PICCOLO_CONF"] = CONF_MODULE
    result = await run_forwards(app_name="chat")
    if not result.success:
        raise RuntimeError(f"migrations failed: {result.message}")
