"""`python -m devenv.stubs --port N` as `./hack/up` runs it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def test_stubs_run_as_a_module_and_serve_both_apis() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "devenv.stubs", "--port", str(port)],
                            cwd=REPO / "hack", stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=1):
                    break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, "stubs exited"
                assert time.monotonic() < deadline, "stubs never answered"
                time.sleep(0.05)
        request = urllib.request.Request(f"{base}/api/v1/referrals/u1/team",
                                         headers={"Authorization": "Bearer x"})
        with urllib.request.urlopen(request, timeout=2) as resp:
            assert json.loads(resp.read()) == {"userId": "u1", "teamSize": 0}
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(f"{base}/api/v1/statistics/team-planting", timeout=2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
