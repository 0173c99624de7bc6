"""Console entry point `authz-service`: `serve` (default) and `migrate up|down --to V|status`.

Exit codes: 0 success; 1 a migration or runtime failure (refusal, SQL error, database
unreachable); 2 a usage or configuration error. Failures print one line on stderr, and
`migrate` writes `{"code", "error"}` as its termination message (`migrate.Code`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from authz_service.config import ConfigError, load_config, parse_database_url
from authz_service.migrate import (
    Code,
    MigrationError,
    Migrator,
    discover,
    failure,
    migrations_dir,
    write_termination,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2
        print(f"authz-service: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="authz-service", description="Authorization service")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the HTTP service (default)")
    migrate = commands.add_parser("migrate", help="database migrations")
    steps = migrate.add_subparsers(dest="action", required=True)
    for name in ("up", "down", "status"):
        step = steps.add_parser(name)
        step.add_argument("--wait", type=float, default=30.0,
                          help="seconds to keep retrying an unreachable database")
        if name == "down":
            step.add_argument("--to", required=True, metavar="VERSION",
                              help="4-digit version to go down to (0000 = nothing applied)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    env = dict(os.environ)
    if args.command == "migrate":
        return run_migrate(args.action, getattr(args, "to", None), args.wait, env)
    return run_serve(env)


def run_serve(env: Mapping[str, str]) -> int:
    try:
        config = load_config(env)
    except ConfigError as exc:
        print(f"authz-service: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from authz_service.workers import serve  # the web stack loads only when serving

    return serve(config)


def _connect(conninfo: str, wait: float) -> psycopg.Connection[Any]:
    deadline = time.monotonic() + wait
    while True:
        try:
            return psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            if time.monotonic() >= deadline:
                detail = " ".join(str(exc).split())
                raise MigrationError(f"cannot connect to the database: {detail}",
                                     Code.UNREACHABLE) from exc
            time.sleep(1.0)


def run_migrate(action: str, to: str | None, wait: float, env: Mapping[str, str]) -> int:
    try:
        database = parse_database_url(env.get("DATABASE_URL", "").strip() or _missing())
    except ConfigError as exc:
        _fail(env, Code.CONFIG, str(exc))
        return EXIT_USAGE
    try:
        migrations = discover(migrations_dir(env))
        with _connect(database.conninfo, wait) as conn:
            migrator = Migrator(conn, migrations)
            migrator.lock(on_wait=lambda: print(
                "authz-service migrate: waiting for another migration run to finish",
                file=sys.stderr, flush=True))
            try:
                result = _act(migrator, action, to)
            finally:
                migrator.unlock()
    except MigrationError as exc:
        _fail(env, exc.code, str(exc))
        return EXIT_FAILED
    except psycopg.Error as exc:
        _fail(env, Code.SQL, "database error: " + " ".join(str(exc).split()))
        return EXIT_FAILED
    text = json.dumps(result)
    print(text, flush=True)
    if action != "status":
        write_termination(env, text)
    if "error" in result:
        print(f"authz-service migrate: {result['error']}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _fail(env: Mapping[str, str], code: Code, message: str) -> None:
    """One line for people on stderr, the code and the line for the operator."""
    print(f"authz-service migrate: {message}", file=sys.stderr)
    write_termination(env, json.dumps(failure(code, message)))


def _act(migrator: Migrator, action: str, to: str | None) -> dict[str, Any]:
    if action == "up":
        version, applied = migrator.up()
        return {"schemaVersion": version, "applied": applied}
    if action == "down":
        version, reverted = migrator.down(to or "")
        return {"schemaVersion": version, "reverted": reverted}
    return migrator.status()


def _missing() -> str:
    raise ConfigError("DATABASE_URL", "is required but not set")


if __name__ == "__main__":
    raise SystemExit(main())
