"""Numbered SQL migrations: `up`, `down --to V`, `status`.

Files are `NNNN_name.up.sql` with a matching `NNNN_name.down.sql`. A down file whose first
line starts with `-- irreversible` refuses to run. Applied migrations are recorded in
`schema_migrations` with the SHA-256 of their up file; an edited applied migration or a
database newer than the code is refused. A session advisory lock serializes concurrent
runs, and each migration runs in its own transaction together with its history row.

Every failure has a `Code`: the operator decides by it (docs/service.md, "Termination
message"), the message is for people.
"""

from __future__ import annotations

import enum
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

NONE_VERSION = "0000"
LOCK_KEY = 0x617574687A  # "authz": one advisory lock for every migration run
_FILE = re.compile(r"(\d{4})_([A-Za-z0-9_\-]+)\.(up|down)\.sql")

HISTORY_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class Code(enum.StrEnum):
    """Why `migrate` failed, machine-readable: part of the contract with the operator."""

    IRREVERSIBLE = "irreversible"        # down across a migration marked irreversible
    SCHEMA_NEWER = "schema_newer"        # the database is newer than this code
    UNKNOWN_VERSION = "unknown_version"  # the database has a migration this code lacks
    CHECKSUM = "checksum"                # an applied migration was edited
    SQL = "sql"                          # a migration script or the history failed in SQL
    UNREACHABLE = "unreachable"          # no database connection within --wait
    INVALID = "invalid"                  # bad arguments or migration files
    CONFIG = "config"                    # DATABASE_URL missing or malformed


class MigrationError(Exception):
    """A refusal or failure, with a one-line message for people and a code for the operator."""

    def __init__(self, message: str, code: Code = Code.INVALID) -> None:
        super().__init__(message)
        self.code = code


def failure(code: Code, message: str) -> dict[str, str]:
    """The JSON a failed run prints and writes as its termination message."""
    return {"code": str(code), "error": message}


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    up_sql: str
    down_sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.up_sql.encode()).hexdigest()

    @property
    def irreversible(self) -> str | None:
        """The reason given on the down file's `-- irreversible: reason` line, if any."""
        first = self.down_sql.lstrip().splitlines()[0] if self.down_sql.strip() else ""
        if first.lower().startswith("-- irreversible"):
            return first.split(":", 1)[1].strip() if ":" in first else "marked irreversible"
        return None


@dataclass(frozen=True)
class Applied:
    version: str
    name: str
    checksum: str


def migrations_dir(env: Mapping[str, str]) -> Path:
    """`MIGRATIONS_DIR`, else `/app/migrations` (the image), else the repo's `migrations/`."""
    if env.get("MIGRATIONS_DIR"):
        return Path(env["MIGRATIONS_DIR"])
    image = Path("/app/migrations")
    if image.is_dir():
        return image
    return Path(__file__).resolve().parents[2] / "migrations"


def discover(folder: Path) -> list[Migration]:
    if not folder.is_dir():
        raise MigrationError(f"migrations folder {folder} does not exist")
    files: dict[tuple[str, str], dict[str, str]] = {}
    for path in sorted(folder.iterdir()):
        match = _FILE.fullmatch(path.name)
        if match is None:
            continue
        version, name, direction = match.groups()
        files.setdefault((version, name), {})[direction] = path.read_text(encoding="utf-8")
    result: list[Migration] = []
    seen: set[str] = set()
    for (version, name), texts in sorted(files.items()):
        if version in seen:
            raise MigrationError(f"two migrations share version {version} in {folder}")
        seen.add(version)
        if version == NONE_VERSION:
            raise MigrationError(f"migration version {NONE_VERSION} is reserved")
        if "up" not in texts or "down" not in texts:
            missing = "up" if "up" not in texts else "down"
            raise MigrationError(f"migration {version}_{name} has no {missing} file")
        result.append(Migration(version, name, texts["up"], texts["down"]))
    return result


def latest(migrations: Sequence[Migration]) -> str:
    return migrations[-1].version if migrations else NONE_VERSION


def check_history(migrations: Sequence[Migration], applied: Sequence[Applied]) -> None:
    """Refuse a database newer than the code, unknown versions and edited migrations."""
    known = {m.version: m for m in migrations}
    newest_code = latest(migrations)
    for row in applied:
        if row.version not in known:
            if row.version > newest_code:
                raise MigrationError(
                    f"database schema {max(a.version for a in applied)} is newer than this "
                    f"code's newest migration {newest_code}; run the newer image instead",
                    Code.SCHEMA_NEWER)
            raise MigrationError(
                f"database has migration {row.version}_{row.name} that this code does not know",
                Code.UNKNOWN_VERSION)
        if known[row.version].checksum != row.checksum:
            raise MigrationError(
                f"migration {row.version}_{row.name} was edited after it was applied "
                f"(checksum {row.checksum[:12]} in the database, "
                f"{known[row.version].checksum[:12]} on disk)", Code.CHECKSUM)


def plan_down(
    migrations: Sequence[Migration], applied: Sequence[Applied], to: str
) -> list[Migration]:
    """The migrations to revert, newest first, to reach version `to`."""
    if not re.fullmatch(r"\d{4}", to):
        raise MigrationError(f"--to must be a 4-digit version such as 0002, got {to!r}")
    known = {m.version: m for m in migrations}
    if to != NONE_VERSION and to not in known:
        raise MigrationError(f"--to {to} is not a known migration version")
    current = applied[-1].version if applied else NONE_VERSION
    if to > current:
        raise MigrationError(f"--to {to} is ahead of the database schema {current}; use up")
    steps = [known[a.version] for a in reversed(applied) if a.version > to]
    for step in steps:
        reason = step.irreversible
        if reason is not None:
            raise MigrationError(
                f"migration {step.version}_{step.name} is irreversible ({reason}); "
                f"cannot go down to {to}", Code.IRREVERSIBLE)
    return steps


class Migrator:
    """Runs migrations on one autocommit connection that holds the advisory lock."""

    def __init__(self, conn: psycopg.Connection[Any], migrations: Sequence[Migration]) -> None:
        self.conn = conn
        self.migrations = list(migrations)

    def lock(self, on_wait: Any = None) -> None:
        row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        if row is None or not row[0]:
            if on_wait is not None:
                on_wait()
            self.conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        self.conn.execute(HISTORY_DDL)

    def unlock(self) -> None:
        self.conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))

    def applied(self) -> list[Applied]:
        rows = self.conn.execute(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
        ).fetchall()
        return [Applied(*row) for row in rows]

    def up(self) -> tuple[str, list[str]]:
        applied = self.applied()
        check_history(self.migrations, applied)
        done = {a.version for a in applied}
        ran: list[str] = []
        for migration in self.migrations:
            if migration.version in done:
                continue
            self._step(f"migration {migration.version}_{migration.name}", migration.up_sql,
                       "INSERT INTO schema_migrations (version, name, checksum) "
                       "VALUES (%s, %s, %s)",
                       (migration.version, migration.name, migration.checksum))
            ran.append(migration.version)
        return self.version(), ran

    def down(self, to: str) -> tuple[str, list[str]]:
        applied = self.applied()
        check_history(self.migrations, applied)
        reverted: list[str] = []
        for migration in plan_down(self.migrations, applied, to):
            self._step(f"down migration {migration.version}_{migration.name}",
                       migration.down_sql, "DELETE FROM schema_migrations WHERE version = %s",
                       (migration.version,))
            reverted.append(migration.version)
        return self.version(), reverted

    def _step(self, label: str, script: str, record: str, params: tuple[str, ...]) -> None:
        """Run one migration script and its history row in one transaction: on any error
        both roll back, so a failed migration leaves the schema as it was."""
        try:
            with self.conn.transaction():
                self.conn.execute(script.encode())
                self.conn.execute(record, params)
        except psycopg.Error as exc:
            raise MigrationError(
                f"{label} failed and was rolled back: {_one_line(exc)}", Code.SQL) from exc

    def status(self) -> dict[str, Any]:
        applied = self.applied()
        done = {a.version for a in applied}
        result: dict[str, Any] = {
            "schemaVersion": applied[-1].version if applied else NONE_VERSION,
            "latest": latest(self.migrations),
            "applied": [a.version for a in applied],
            "pending": [m.version for m in self.migrations if m.version not in done],
        }
        try:
            check_history(self.migrations, applied)
        except MigrationError as exc:
            result.update(failure(exc.code, str(exc)))
        return result

    def version(self) -> str:
        row = self.conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return row[0] if row and row[0] else NONE_VERSION


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def termination_path(env: Mapping[str, str]) -> Path:
    return Path(env.get("TERMINATION_MESSAGE_PATH") or "/dev/termination-log")


def write_termination(env: Mapping[str, str], text: str) -> None:
    """Write the message the operator reads, only where that path is writable."""
    path = termination_path(env)
    target = path if path.exists() else path.parent
    if not os.access(target, os.W_OK):
        return
    try:
        path.write_text(text, encoding="utf-8")
    except OSError:
        return
