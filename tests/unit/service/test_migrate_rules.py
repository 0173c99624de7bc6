from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from authz_service.migrate import (
    Applied,
    Code,
    Migration,
    MigrationError,
    check_history,
    discover,
    failure,
    migrations_dir,
    plan_down,
)

REPO_MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"


def m(version: str, down: str = "SELECT 1;") -> Migration:
    return Migration(version, f"m{version}", f"SELECT {int(version)};", down)


def applied(*migrations: Migration) -> list[Applied]:
    return [Applied(x.version, x.name, x.checksum) for x in migrations]


CODE = [m("0001"), m("0002"), m("0003", "-- irreversible: drops data\nSELECT 1;")]


def test_repo_migrations_pair_up_and_number_in_order() -> None:
    found = discover(REPO_MIGRATIONS)
    assert [x.version for x in found] == sorted(x.version for x in found)
    assert found[0].version == "0001"
    assert all(x.irreversible is None for x in found)


def test_migrations_dir_prefers_env(tmp_path: Path) -> None:
    assert migrations_dir({"MIGRATIONS_DIR": str(tmp_path)}) == tmp_path
    assert migrations_dir({}).name == "migrations"


def test_missing_down_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.up.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="no down file"):
        discover(tmp_path)


def test_newer_database_is_refused_naming_both_versions() -> None:
    newer = applied(*CODE[:2], m("0004"))
    with pytest.raises(MigrationError) as info:
        check_history(CODE[:2], newer)
    text = str(info.value)
    assert "newer than" in text
    assert "0004" in text
    assert "0002" in text


def test_edited_migration_is_refused() -> None:
    edited = [m("0001"), Migration("0002", "m0002", "SELECT 'edited';", "SELECT 1;")]
    with pytest.raises(MigrationError, match="edited"):
        check_history(edited, applied(*CODE[:2]))


def test_plan_down_newest_first() -> None:
    assert [x.version for x in plan_down(CODE[:2], applied(*CODE[:2]), "0000")] == [
        "0002", "0001"]
    assert plan_down(CODE[:2], applied(*CODE[:2]), "0002") == []


def test_irreversible_migration_refuses_down() -> None:
    with pytest.raises(MigrationError, match="irreversible \\(drops data\\)"):
        plan_down(CODE, applied(*CODE), "0002")


@pytest.mark.parametrize(("to", "message"), [
    ("2", "4-digit"), ("0009", "not a known"), ("0003", "ahead of"),
])
def test_bad_down_targets(to: str, message: str) -> None:
    with pytest.raises(MigrationError, match=message):
        plan_down(CODE, applied(*CODE[:2]), to)


@pytest.mark.parametrize(("refuse", "code"), [
    (lambda: check_history(CODE[:2], applied(*CODE[:2], m("0004"))), Code.SCHEMA_NEWER),
    (lambda: check_history(CODE[:2], applied(m("0001"), Migration("0001b", "x", "", ""))),
     Code.UNKNOWN_VERSION),
    (lambda: check_history([m("0001"), Migration("0002", "m0002", "SELECT 0;", "")],
                           applied(*CODE[:2])), Code.CHECKSUM),
    (lambda: plan_down(CODE, applied(*CODE), "0002"), Code.IRREVERSIBLE),
    (lambda: plan_down(CODE, applied(*CODE[:2]), "2"), Code.INVALID),
])
def test_every_refusal_carries_the_code_the_operator_decides_by(
        refuse: Any, code: Code) -> None:
    with pytest.raises(MigrationError) as info:
        refuse()
    assert info.value.code is code
    assert failure(info.value.code, str(info.value)) == {"code": str(code),
                                                         "error": str(info.value)}
