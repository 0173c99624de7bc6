"""The images' lock files must match pyproject.toml: regenerate them with ./hack/lock."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
LOCKS = {
    "requirements.lock": ("project", "dependencies"),
    "requirements-build.lock": ("build-system", "requires"),
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(table: str, key: str) -> list[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs: list[str] = data[table][key]
    return reqs


def _pins(lock: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (ROOT / lock).read_text().splitlines():
        m = PIN.match(line)
        if m:
            out[_normalize(m[1])] = m[2]
    return out


@pytest.mark.parametrize(("lock", "source"), LOCKS.items())
def test_lock_was_made_from_the_current_pyproject(lock: str, source: tuple[str, str]) -> None:
    reqs = _requirements(*source)
    digest = hashlib.sha256(json.dumps(sorted(reqs)).encode()).hexdigest()
    recorded = (ROOT / lock).read_text().rstrip().splitlines()[-1]
    assert recorded == f"# pyproject {source[0]}.{source[1]} sha256: {digest}", (
        f"{lock} is stale: pyproject.toml's {source[0]}.{source[1]} changed; run ./hack/lock")


@pytest.mark.parametrize(("lock", "source"), LOCKS.items())
def test_every_requirement_and_extra_is_pinned(lock: str, source: tuple[str, str]) -> None:
    pins = _pins(lock)
    for req in _requirements(*source):
        m = REQ_NAME.match(req)
        assert m, req
        name = _normalize(m[1])
        assert name in pins, f"{name} (from pyproject.toml) is not in {lock}: run ./hack/lock"
    # the extras we rely on bring their own packages (psycopg[binary,pool], pyjwt[crypto])
    if lock == "requirements.lock":
        assert {"psycopg-binary", "psycopg-pool", "cryptography"} <= set(pins)


@pytest.mark.parametrize("lock", LOCKS)
def test_every_pin_is_hashed(lock: str) -> None:
    text = (ROOT / lock).read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    pinned = [e for e in entries if PIN.match(e)]
    assert pinned
    for entry in pinned:
        assert "--hash=sha256:" in entry, entry.splitlines()[0]
