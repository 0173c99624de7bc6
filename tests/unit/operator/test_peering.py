"""Which peering objects a replica needs, and which of them are missing."""

from __future__ import annotations

import pytest

from authz_operator import peering
from authz_operator.kube import Kube, KubeError


def test_cluster_wide_peering_is_the_clusters_one_object() -> None:
    assert peering.object_paths("default", True, ["a", "b"]) == [
        "/apis/kopf.dev/v1/clusterkopfpeerings/default"]


def test_namespaced_peering_is_one_object_in_each_namespace() -> None:
    assert peering.object_paths("ours", False, ["a", "b"]) == [
        "/apis/kopf.dev/v1/namespaces/a/kopfpeerings/ours",
        "/apis/kopf.dev/v1/namespaces/b/kopfpeerings/ours"]


class FakeApi:
    """Answers GETs of the paths it holds, 404 for the others."""

    def __init__(self, held: set[str]) -> None:
        self.held = held

    def send(self, method: str, path: str, query: list[tuple[str, str]], data: bytes | None,
             headers: dict[str, str]) -> tuple[int, bytes]:
        assert method == "GET"
        return (200, b"{}") if path in self.held else (404, b'{"message": "not found"}')

    def close(self) -> None:
        pass


def test_missing_names_the_objects_the_api_server_does_not_have() -> None:
    paths = peering.object_paths("default", False, ["a", "b"])
    kube = Kube(FakeApi({paths[0]}))
    assert peering.missing(kube, paths) == [paths[1]]


def test_an_error_other_than_not_found_is_not_taken_for_missing() -> None:
    class Forbidden(FakeApi):
        def send(self, method: str, path: str, query: list[tuple[str, str]],
                 data: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
            return 403, b'{"message": "forbidden"}'

    with pytest.raises(KubeError) as raised:
        peering.missing(Kube(Forbidden(set())), ["/apis/kopf.dev/v1/clusterkopfpeerings/x"])
    assert raised.value.status == 403


def test_a_failed_check_is_a_warning_not_a_failed_start(caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    class Broken(FakeApi):
        def send(self, method: str, path: str, query: list[tuple[str, str]],
                 data: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
            return 403, b'{"message": "forbidden"}'

    peering.say_if_missing(Kube(Broken(set())), ["/apis/kopf.dev/v1/clusterkopfpeerings/x"])
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "could not check" in caplog.text


def test_each_missing_object_is_an_error_line(caplog: pytest.LogCaptureFixture) -> None:
    paths = peering.object_paths("default", False, ["a", "b"])
    peering.say_if_missing(Kube(FakeApi({paths[1]})), paths)
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert f"kopf's peering object {paths[0]} does not exist" in caplog.text
