"""`authz-service migrate` as the migration Job runs it: a real process on a real database."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from authz_service.migrate import LOCK_KEY, discover, migrations_dir

pytestmark = pytest.mark.servers

CLI = str(Path(sys.executable).parent / "authz-service")
REPO_MIGRATIONS = migrations_dir({})
VERSIONS = [m.version for m in discover(REPO_MIGRATIONS)]
LATEST = VERSIONS[-1]


def run(url: str, *args: str, tmp: Path, migrations: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MIGRATIONS_DIR")}
    full.update({"DATABASE_URL": url, "TERMINATION_MESSAGE_PATH": str(tmp / "termination")})
    if migrations is not None:
        full["MIGRATIONS_DIR"] = str(migrations)
    full.update(env or {})
    return subprocess.run([CLI, "migrate", *args], env=full, capture_output=True, text=True,
                          timeout=60, check=False)


def ok(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def failed(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def schema(url: str) -> list[tuple[Any, ...]]:
    """Tables, columns and indexes of the public schema (minus the history table)."""
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM "
            "information_schema.columns WHERE table_schema = 'public' AND table_name <> "
            "'schema_migrations' ORDER BY 1, 2").fetchall()
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND "
            "tablename <> 'schema_migrations' ORDER BY 1").fetchall()
    return [*columns, *indexes]


def copy_migrations(tmp: Path, extra: dict[str, str] | None = None) -> Path:
    folder = tmp / "migrations"
    shutil.copytree(REPO_MIGRATIONS, folder)
    for name, text in (extra or {}).items():
        (folder / name).write_text(text)
    return folder


def test_up_prints_and_writes_the_termination_message(empty_database: str,
                                                      tmp_path: Path) -> None:
    result = ok(run(empty_database, "up", tmp=tmp_path))
    assert result == {"schemaVersion": LATEST, "applied": VERSIONS}
    assert json.loads((tmp_path / "termination").read_text()) == result
    assert ok(run(empty_database, "up", tmp=tmp_path)) == {"schemaVersion": LATEST,
                                                           "applied": []}
    status = ok(run(empty_database, "status", tmp=tmp_path))
    assert status == {"schemaVersion": LATEST, "latest": LATEST, "applied": VERSIONS,
                      "pending": []}


def test_every_migration_round_trips_up_down_up(empty_database: str, tmp_path: Path) -> None:
    ok(run(empty_database, "up", tmp=tmp_path))
    full = schema(empty_database)
    shapes: dict[str, list[tuple[Any, ...]]] = {LATEST: full}
    # Step down one version at a time, recording each schema, to nothing at all.
    targets = [*reversed(VERSIONS[:-1]), "0000"]
    current = LATEST
    for target in targets:
        result = ok(run(empty_database, "down", "--to", target, tmp=tmp_path))
        assert result == {"schemaVersion": target, "reverted": [current]}
        assert json.loads((tmp_path / "termination").read_text()) == result
        shapes[target] = schema(empty_database)
        assert shapes[target] != shapes[current]
        current = target
    assert shapes["0000"] == []
    # And back up, one migration at a time through a trimmed folder: each step's schema
    # equals the one recorded on the way down.
    for index, version in enumerate(VERSIONS):
        folder = tmp_path / f"upto-{version}"
        folder.mkdir()
        for migration in discover(REPO_MIGRATIONS)[: index + 1]:
            for direction in ("up", "down"):
                name = f"{migration.version}_{migration.name}.{direction}.sql"
                shutil.copy(REPO_MIGRATIONS / name, folder / name)
        assert ok(run(empty_database, "up", tmp=tmp_path, migrations=folder)) == {
            "schemaVersion": version, "applied": [version]}
        assert schema(empty_database) == shapes[version]


def test_status_lists_pending(empty_database: str, tmp_path: Path) -> None:
    ok(run(empty_database, "up", tmp=tmp_path))
    ok(run(empty_database, "down", "--to", VERSIONS[0], tmp=tmp_path))
    status = ok(run(empty_database, "status", tmp=tmp_path))
    assert status["schemaVersion"] == VERSIONS[0]
    assert status["pending"] == VERSIONS[1:]


def test_database_newer_than_the_code_is_refused(empty_database: str, tmp_path: Path) -> None:
    newer = copy_migrations(tmp_path, {"0099_future.up.sql": "CREATE TABLE future (x int);",
                                       "0099_future.down.sql": "DROP TABLE future;"})
    ok(run(empty_database, "up", tmp=tmp_path, migrations=newer))
    for args in (["up"], ["down", "--to", VERSIONS[0]], ["status"]):
        line = failed(run(empty_database, *args, tmp=tmp_path))
        assert "newer than" in line
        assert "0099" in line
        assert LATEST in line
    message = json.loads((tmp_path / "termination").read_text())
    assert "newer than" in message["error"]


def test_edited_applied_migration_is_refused(empty_database: str, tmp_path: Path) -> None:
    folder = copy_migrations(tmp_path)
    ok(run(empty_database, "up", tmp=tmp_path, migrations=folder))
    target = next(folder.glob(f"{VERSIONS[0]}_*.up.sql"))
    target.write_text(target.read_text() + "\n-- edited\n")
    line = failed(run(empty_database, "up", tmp=tmp_path, migrations=folder))
    assert "edited after it was applied" in line
    assert VERSIONS[0] in line


def test_irreversible_migration_refuses_down(empty_database: str, tmp_path: Path) -> None:
    folder = copy_migrations(tmp_path, {
        "0099_squash.up.sql": "ALTER TABLE authorizations DROP COLUMN revoke_reason;",
        "0099_squash.down.sql": "-- irreversible: the dropped column's data is gone\n",
    })
    ok(run(empty_database, "up", tmp=tmp_path, migrations=folder))
    line = failed(run(empty_database, "down", "--to", LATEST, tmp=tmp_path, migrations=folder))
    assert "irreversible" in line
    assert "0099" in line
    status = ok(run(empty_database, "status", tmp=tmp_path, migrations=folder))
    assert status["schemaVersion"] == "0099"


def test_a_failing_migration_rolls_back_entirely(empty_database: str, tmp_path: Path) -> None:
    folder = copy_migrations(tmp_path, {
        "0099_broken.up.sql": "CREATE TABLE half_done (x int);\nSELECT no_such_function();",
        "0099_broken.down.sql": "DROP TABLE half_done;",
    })
    line = failed(run(empty_database, "up", tmp=tmp_path, migrations=folder))
    assert "0099_broken failed and was rolled back" in line
    status = ok(run(empty_database, "status", tmp=tmp_path))
    assert status["schemaVersion"] == LATEST  # everything before it was applied
    with psycopg.connect(empty_database) as conn:
        found = conn.execute("SELECT to_regclass('half_done')").fetchone()
    assert found == (None,)


def test_concurrent_runs_serialize_on_the_advisory_lock(empty_database: str,
                                                        tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MIGRATIONS_DIR"}
    env.update({"DATABASE_URL": empty_database,
                "TERMINATION_MESSAGE_PATH": str(tmp_path / "termination")})
    with psycopg.connect(empty_database, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        proc = subprocess.Popen([CLI, "migrate", "up"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 20
            while True:  # poll until the second run is waiting on our lock
                waiting = holder.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND NOT granted").fetchone()
                if waiting == (1,):
                    break
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "migrate never waited for the lock"
                time.sleep(0.05)
            found = holder.execute("SELECT to_regclass('authorizations')").fetchone()
            assert found == (None,)  # nothing ran while the lock was held
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out)["applied"] == VERSIONS
    assert "waiting for another migration run" in err


def test_missing_database_url_is_a_usage_error(tmp_path: Path) -> None:
    result = run("", "up", tmp=tmp_path)
    assert result.returncode == 2
    assert "DATABASE_URL" in failed(result)


def test_unreachable_database_fails_with_one_line(tmp_path: Path) -> None:
    line = failed(run("postgresql://postgres@127.0.0.1:1/x", "status", "--wait", "0",
                      tmp=tmp_path))
    assert "cannot connect to the database" in line


def test_unwritable_termination_path_is_skipped(empty_database: str, tmp_path: Path) -> None:
    result = run(empty_database, "up", tmp=tmp_path,
                 env={"TERMINATION_MESSAGE_PATH": "/proc/no/such/dir/termination-log"})
    assert ok(result)["schemaVersion"] == LATEST


def test_unknown_down_target_is_refused(empty_database: str, tmp_path: Path) -> None:
    ok(run(empty_database, "up", tmp=tmp_path))
    assert "not a known migration version" in failed(
        run(empty_database, "down", "--to", "0042", tmp=tmp_path))
    usage = run(empty_database, "down", tmp=tmp_path)
    assert usage.returncode == 2
    assert "--to" in failed(usage)
