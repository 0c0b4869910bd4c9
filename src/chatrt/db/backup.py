"""``chatrt backup`` and ``chatrt restore``: one file holding the whole database.

PostgreSQL goes through ``pg_dump --format=custom`` and ``pg_restore``; the password travels
in ``PGPASSWORD``, never on a command line another user could read in ``ps``. SQLite (the
embedded default) uses sqlite3's online backup API, which copies a consistent snapshot even
while the app is writing.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from chatrt.settings import DatabaseSettings

PG_MAGIC = b"PGDMP"
SQLITE_MAGIC = b"SQLite format 3\x00"


class BackupError(RuntimeError):
    """A backup or restore failed; the message is one line, safe to print."""


@dataclass(frozen=True)
class PgTarget:
    """A PostgreSQL URL split into what may be shown and the secret that may not."""

    dsn: str  # the URL without its password
    password: str | None
    label: str  # "database chatrt on db:5432", for messages

    def env(self, base: dict[str, str]) -> dict[str, str]:
        env = dict(base)
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return env

    def redact(self, text: str) -> str:
        if self.password:
            text = text.replace(self.password, "***")
        return text


def pg_target(url: str) -> PgTarget:
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    netloc = host if ":" not in host else f"[{host}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    if parts.username is not None:
        # The user name stays percent-encoded: libpq decodes it itself.
        netloc = f"{parts.netloc.rpartition('@')[0].partition(':')[0]}@{netloc}"
    dsn = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    password = unquote(parts.password) if parts.password is not None else None
    name = parts.path.lstrip("/") or "(default)"
    where = netloc.rpartition("@")[2]
    return PgTarget(dsn=dsn, password=password, label=f"database {name} on {where}")


def backup(db: DatabaseSettings, output: Path) -> str:
    """Write the whole database to ``output`` (replaced atomically); return a summary line."""
    output = output.expanduser()
    if not output.parent.is_dir():
        raise BackupError(f"folder does not exist: {output.parent}")
    # A temporary file beside the target: a failed backup never truncates the previous one,
    # and mkstemp's 0600 keeps password hashes away from other users.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if db.is_sqlite:
            _sqlite_copy(Path(db.sqlite_path), tmp)
            label = f"SQLite file {db.sqlite_path}"
        else:
            target = pg_target(db.url)
            _run(["pg_dump", "--format=custom", f"--file={tmp}", f"--dbname={target.dsn}"], target)
            label = target.label
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
    return f"backed up {label} to {output} ({output.stat().st_size} bytes)"


def restore(db: DatabaseSettings, source: Path) -> str:
    """Replace the database's contents with the backup in ``source``; return a summary line."""
    source = source.expanduser()
    if not source.is_file():
        raise BackupError(f"backup file not found: {source}")
    with source.open("rb") as fh:
        head = fh.read(len(SQLITE_MAGIC))
    if db.is_sqlite:
        if not head.startswith(SQLITE_MAGIC):
            raise BackupError(f"{source} is not a SQLite backup (CHATRT_DATABASE_URL is SQLite)")
        _sqlite_copy(source, Path(db.sqlite_path))
        return f"restored {source} into SQLite file {db.sqlite_path}"
    if not head.startswith(PG_MAGIC):
        raise BackupError(
            f"{source} is not a PostgreSQL backup made by chatrt backup (pg_dump custom format)"
        )
    target = pg_target(db.url)
    _run(
        [
            "pg_restore",
            "--clean",
            "--if-exists",
            "--no-owner",
            # All or nothing: a failed restore leaves the database as it was.
            "--single-transaction",
            "--exit-on-error",
            f"--dbname={target.dsn}",
            str(source),
        ],
        target,
    )
    return f"restored {source} into {target.label}"


def _run(argv: list[str], target: PgTarget) -> None:
    binary = shutil.which(argv[0])
    if binary is None:
        raise BackupError(f"{argv[0]} not found on PATH; install the PostgreSQL client tools")
    # Without a password in the URL the operator's own PGPASSWORD or ~/.pgpass applies.
    # English messages, so the error line can be picked out reliably.
    base = dict(os.environ) | {"LC_MESSAGES": "C"}
    done = subprocess.run(  # noqa: S603 - fixed program, arguments are not shell-parsed
        [binary, *argv[1:]],
        env=target.env(base),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BackupError(target.redact(_first_error(argv[0], done.stderr, done.returncode)))


def _first_error(program: str, stderr: str, code: int) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    chosen = next((line for line in lines if "error:" in line), lines[-1] if lines else "")
    chosen = chosen.removeprefix(f"{program}: ").removeprefix("error: ")
    return f"{program}: {chosen or f'exited with code {code}'}"


def _sqlite_copy(source: Path, target: Path) -> None:
    if not source.is_file():
        raise BackupError(f"SQLite database not found: {source}")
    try:
        # Read-only URI: a missing or mistyped source must not be created empty.
        src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            dst = sqlite3.connect(target, timeout=30)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise BackupError(f"sqlite: {exc}") from None
