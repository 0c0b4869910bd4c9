"""``chatrt serve | migrate | purge-deleted | backup | restore | usage-report``."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from chatrt.settings import Settings, SettingsError


def _duration(raw: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([dhm])", raw.strip())
    if not match:
        raise argparse.ArgumentTypeError("expected a duration like 30d, 12h or 90m")
    amount, unit = int(match.group(1)), match.group(2)
    return {
        "d": timedelta(days=amount),
        "h": timedelta(hours=amount),
        "m": timedelta(minutes=amount),
    }[unit]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chatrt",
        description="Real-time AI chat backend. Configured by CHATRT_* environment variables.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve the app with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--ssl-certfile", default=None, metavar="FILE", help="serve HTTPS with this PEM certificate"
    )
    serve.add_argument(
        "--ssl-keyfile", default=None, metavar="FILE", help="the certificate's PEM private key"
    )
    commands.add_parser("migrate", help="apply pending database migrations")
    purge = commands.add_parser(
        "purge-deleted", help="delete for good conversations soft-deleted long enough ago"
    )
    purge.add_argument(
        "--older-than",
        type=_duration,
        default=None,
        metavar="AGE",
        help="e.g. 30d (default: CHATRT_RETENTION_DAYS)",
    )
    backup = commands.add_parser(
        "backup", help="write the whole database to one file (pg_dump, or a SQLite copy)"
    )
    backup.add_argument("--output", dest="path", type=Path, required=True, metavar="FILE")
    restore = commands.add_parser(
        "restore", help="replace the database's contents with a backup made by chatrt backup"
    )
    restore.add_argument("--input", dest="path", type=Path, required=True, metavar="FILE")
    usage = commands.add_parser(
        "usage-report", help="tokens and cost by model and user over a recent period"
    )
    usage.add_argument(
        "--since", type=_duration, default=timedelta(days=7), metavar="AGE", help="default 7d"
    )
    usage.add_argument("--json", action="store_true", help="machine-readable output")
    reference = commands.add_parser(
        "config-reference", help="print every CHATRT_* variable with its default and meaning"
    )
    reference.add_argument(
        "--write", type=Path, metavar="FILE", help="update the table in FILE instead of printing"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "config-reference":
        return _config_reference(args.write)
    if args.command == "serve" and (args.ssl_certfile is None) != (args.ssl_keyfile is None):
        parser.error("--ssl-certfile and --ssl-keyfile go together")
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"chatrt: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        try:
            settings.require_secret_key()
            if args.workers > 1 and settings.redis.url is None:
                raise SettingsError(
                    "CHATRT_REDIS_URL: --workers above 1 needs Redis, so that every worker "
                    "sees the same sessions and events"
                )
        except SettingsError as exc:
            print(f"chatrt: configuration error: {exc}", file=sys.stderr)
            return 2
    if args.command == "serve":
        return _serve(
            settings,
            args.host,
            args.port,
            args.workers,
            ssl_certfile=args.ssl_certfile,
            ssl_keyfile=args.ssl_keyfile,
        )
    try:
        if args.command == "migrate":
            return _migrate()
        if args.command in ("backup", "restore"):
            return _backup_or_restore(settings, args.command, args.path)
        if args.command == "usage-report":
            return asyncio.run(_usage_report(settings, args.since, as_json=args.json))
        older = args.older_than
        if older is None:
            older = timedelta(days=settings.limits.retention_days)
        return asyncio.run(_purge(settings, older))
    except Exception as exc:
        # Operators need the cause in one line, not a traceback.
        print(f"chatrt {args.command}: failed: {exc}", file=sys.stderr)
        return 1


def _config_reference(path: Path | None) -> int:
    from chatrt import config_reference

    if path is None:
        sys.stdout.write(config_reference.table())
    elif config_reference.write(path):
        print(f"updated {path}")
    return 0


def _migrate() -> int:
    from chatrt.db.migrate import apply_migrations

    asyncio.run(apply_migrations())
    return 0


def _migrate_logged() -> None:
    """Migrate, turning Piccolo's printed progress into log lines."""
    import contextlib
    import io
    import logging

    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            _migrate()
    finally:
        logger = logging.getLogger("chatrt.migrate")
        for line in printed.getvalue().splitlines():
            if line.strip():
                logger.info(line.strip())


async def _purge(settings: Settings, older_than: timedelta) -> int:
    from chatrt.conversations.service import purge_deleted
    from chatrt.db.engine import database

    async with database(settings.db):
        count = await purge_deleted(older_than)
    print(f"purged {count} conversation(s) deleted more than {older_than} ago")
    return 0


def _backup_or_restore(settings: Settings, command: str, path: Path) -> int:
    from chatrt.db.backup import backup, restore

    run = backup if command == "backup" else restore
    print(run(settings.db, path))
    return 0


async def _usage_report(settings: Settings, since: timedelta, *, as_json: bool) -> int:
    from chatrt.clock import utcnow
    from chatrt.db.engine import database
    from chatrt.reports import usage

    until = utcnow()
    async with database(settings.db):
        report = await usage.usage_report(until - since, until, settings.providers)
    if as_json:
        sys.stdout.write(usage.as_json(report).decode() + "\n")
    else:
        print(usage.as_text(report))
    return 0


def _serve(
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    *,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
) -> int:
    import logging.config

    import uvicorn

    from chatrt.observability.logs import log_config

    # Configured here as well as by uvicorn, so the migration's output is logged alike.
    logging.config.dictConfig(log_config(settings.log))
    # Python warnings become log lines in the same format instead of raw stderr text.
    logging.captureWarnings(True)
    if settings.db.is_sqlite:
        # The embedded default must work with no setup step, so it migrates its own file.
        _migrate_logged()
    with _metrics_directory(workers):
        uvicorn.run(
            "chatrt.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            # The app reads X-Forwarded-* itself, from CHATRT_TRUSTED_PROXIES only, so that
            # the client address (a rate-limit key) follows one rule under every server.
            proxy_headers=False,
            # Our request log replaces uvicorn's access log: route templates, not raw paths.
            log_config=log_config(settings.log),
            access_log=False,
            # uvicorn closes an oversized frame with 1009 before it reaches the app.
            ws_max_size=settings.realtime.max_frame_bytes,
            timeout_graceful_shutdown=int(settings.server.shutdown_grace_s) + 5,
        )
    return 0


@contextmanager
def _metrics_directory(workers: int) -> Iterator[None]:
    """With several workers, each writes its metrics to files that ``/metrics`` sums.

    The directory must be set before a worker imports prometheus_client, and must start
    empty, or a previous run's counts would be added in.
    """
    from chatrt.observability.metrics import MULTIPROC_ENV

    if workers <= 1:
        yield
        return
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        for stale in Path(configured).glob("*.db"):
            stale.unlink()
        yield
        return
    with tempfile.TemporaryDirectory(prefix="chatrt-metrics-") as directory:
        os.environ[MULTIPROC_ENV] = directory
        try:
            yield
        finally:
            del os.environ[MULTIPROC_ENV]
