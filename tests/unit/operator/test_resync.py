"""Leftovers of a watch that listed again (resync.py), over plain data."""

from __future__ import annotations

from typing import Any

from authz_operator import labels
from authz_operator import resources as r
from authz_operator.cache import WatchCache
from authz_operator.kube import Kube
from authz_operator.lifecycle import SecretView
from authz_operator.resync import BURST_SECONDS, SETTLE_SECONDS, Relists, Resync, leftovers

from .samples import OWNER

NS, NAME = OWNER.namespace, OWNER.name


def obj(name: str, uid: str, rv: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS, "uid": uid, "resourceVersion": str(rv),
                         "ownerReferences": [r.owner_reference(OWNER)]}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_first_listing_of_a_kind_is_the_start_a_later_one_a_relist() -> None:
    clock = Clock()
    relists = Relists(clock)
    for _ in range(3):                  # the operator starts: one burst per kind
        relists.noticed("Deployment")
        relists.noticed("Pod")
        clock.now += 1
    clock.now += SETTLE_SECONDS + 1
    assert not relists.due()
    clock.now += BURST_SECONDS
    relists.noticed("Deployment")       # listed again (after a 410, say)
    relists.noticed("Deployment")
    assert not relists.due()            # its burst is still coming
    clock.now += SETTLE_SECONDS
    assert relists.due()
    assert not relists.due()            # taken


def test_leftovers_are_what_the_list_lacks_unless_newer_than_the_list() -> None:
    cached = [obj("a", "ua", 5), obj("b", "ub", 6), obj("c", "uc", 30)]
    listed = [obj("a", "ua", 5)]
    assert [o["metadata"]["name"] for o in leftovers(cached, listed, 20)] == ["b"]
    views = [("s", SecretView("4", frozenset())), ("t", SecretView("40", frozenset()))]
    assert leftovers(views, [], 20) == [views[0]]


class Api:
    def __init__(self, listed: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
        self.listed = listed
        self.calls: list[tuple[str, str, str, str]] = []

    def secret_view(self, namespace: str, name: str) -> None:
        return None

    def list_metadata(self, kind: str, namespace: str, label_selector: str = "",
                      field_selector: str = "") -> tuple[list[dict[str, Any]], int]:
        self.calls.append((kind, namespace, label_selector, field_selector))
        return self.listed.get((kind, namespace), []), 20


def test_a_sweep_hides_leftovers_and_wakes_their_resources() -> None:
    job = obj(f"{NAME}-migrate-3", "uj", 7)
    indexes: dict[str, dict[Any, list[Any]]] = {
        "Deployment": {(NS, NAME): [obj(NAME, "ud", 8)]},
        "ConfigMap": {(NS, f"{NAME}-config"): [obj(f"{NAME}-config", "uc", 9)]},
        "Job": {(NS, NAME): [job]},
        "Secret": {(NS, "authorization-secrets"): [SecretView("3", frozenset({"k"}))]},
        "Pod": {(NS, NAME): [obj(f"{NAME}-abc", "up", 10)]},
    }
    api = Api({("ConfigMap", NS): [obj(f"{NAME}-config", "uc", 9)],
               ("Pod", NS): [obj(f"{NAME}-abc", "up", 10)]})
    kube: Kube = api  # type: ignore[assignment]
    cache = WatchCache(kube, indexes)
    woken: list[tuple[str, str, str]] = []
    resync = Resync(cache, kube, Relists(), lambda ns, n, why: woken.append((ns, n, why)),
                    readers=lambda ns, secret: [NAME])
    assert resync.sweep() == 3
    assert sorted(c[0] for c in api.calls) == ["ConfigMap", "Deployment", "Job", "Pod", "Secret"]
    assert ("Secret", NS, "", "") in api.calls          # Secrets are not ours: all of them
    # pods as the watch selects them: the running serving ones
    assert ("Pod", NS, labels.watch_selector("Pod"), "status.phase=Running") in api.calls
    assert cache.child("Deployment", NS, NAME, confirm_absent=False) is None
    assert cache.child("ConfigMap", NS, f"{NAME}-config", confirm_absent=False) is not None
    assert cache.jobs(NS, NAME) == []
    assert cache.secret(NS, "authorization-secrets") is None
    assert sorted(why for _, _, why in woken) == [
        "Deployment authorization-service is gone",
        "Job authorization-service-migrate-3 is gone",
        "Secret authorization-secrets is gone"]
    # made again later: a newer version shows
    indexes["Secret"][(NS, "authorization-secrets")] = [SecretView("25", frozenset({"k"}))]
    assert cache.secret(NS, "authorization-secrets") == SecretView("25", frozenset({"k"}))
