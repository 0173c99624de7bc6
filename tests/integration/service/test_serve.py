"""`authz-service serve` as a real process: start-up, config errors, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devenv.stubs import StubState

from .conftest import ADMIN, Env, eventually, service_env

pytestmark = pytest.mark.servers
CLI = str(Path(sys.executable).parent / "authz-service")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def spawn(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Plain `authz-service` (no arguments) serves."""
    with log_path.open("wb") as log_file:
        return subprocess.Popen([CLI], env=env, stdout=log_file, stderr=subprocess.STDOUT)


@pytest.mark.parametrize(("change", "variable"), [
    ({"JWT_SECRET": ""}, "JWT_SECRET"),
    ({"DATABASE_URL": "mysql://nope"}, "DATABASE_URL"),
    ({"PORT": "eighty"}, "PORT"),
    ({"KAFKA_BROKERS": ""}, "KAFKA_BROKERS"),
])
def test_a_bad_variable_stops_start_up_with_one_line(
    devenv: Env, migrated_database: str, change: dict[str, str], variable: str
) -> None:
    env = {**os.environ, **service_env(devenv, migrated_database), **change}
    result = subprocess.run([CLI, "serve"], env=env, capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert variable in lines[0]
    assert "s3cret" not in result.stderr


async def test_sigterm_finishes_in_flight_requests_then_exits(
    devenv: Env, migrated_database: str, stub_server: tuple[str, StubState], tmp_path: Path
) -> None:
    url, state = stub_server
    port = free_port()
    env = {**os.environ, **service_env(devenv, migrated_database), "PORT": str(port),
           "REFERRAL_SERVICE_URL": url, "STATISTICS_SERVICE_URL": url}
    log_path = tmp_path / "service.log"
    proc = spawn(env, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async def live() -> bool:
                assert proc.poll() is None, "service exited during start-up"
                try:
                    async with http.get(f"{base}/health/live") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(live, within=30, what="the service to answer")
            async with http.post(f"{base}/api/v1/authorizations", headers=ADMIN, json={
                    "userId": "serve-user", "roleType": "COMMUNITY",
                    "regionCode": "440106"}) as resp:
                assert resp.status == 201
                ident = (await resp.json())["id"]

            state.faults["statistics"] = "hang"  # the request stays in flight
            in_flight = asyncio.ensure_future(
                http.get(f"{base}/api/v1/authorizations/{ident}/assessment", headers=ADMIN))

            async def stub_called() -> bool:
                return any(c["service"] == "statistics" for c in state.calls)

            await eventually(stub_called, what="the in-flight call to reach the stub")
            proc.send_signal(signal.SIGTERM)

            async def refuses_new() -> bool:
                try:
                    async with aiohttp.ClientSession() as other, \
                            other.get(f"{base}/health/live"):
                        return False
                except aiohttp.ClientError:
                    return True

            await eventually(refuses_new, what="the listener to close")
            state.faults.pop("statistics")
            state.released.set()
            response: Any = await in_flight
            assert response.status == 200
            response.release()
        code = await asyncio.to_thread(proc.wait, 30)
        assert code == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log_path.read_text()
    assert "Authorization created" in output
    assert '"level": "error"' not in output, output
