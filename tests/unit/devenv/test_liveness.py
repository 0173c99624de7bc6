"""The pod runner's liveness timing (pure)."""

from __future__ import annotations

from devenv.podrunner import Liveness


def test_liveness_waits_its_delay_and_needs_consecutive_failures() -> None:
    live = Liveness({"initialDelaySeconds": 5, "periodSeconds": 2, "failureThreshold": 2}, 100)
    assert not live.due(104.9)
    assert live.due(105)
    assert not live.due(106)  # next check one period later
    assert not live.failed(ok=False)
    assert not live.failed(ok=True)  # a success resets the count
    assert not live.failed(ok=False)
    assert live.failed(ok=False)
    assert not Liveness(None, 0).due(1_000)
