"""The only module that talks to the Kubernetes API server.

Paths we build, JSON dicts in and out, over `apiclient.ApiClient` (urllib3 with the
credentials of `credentials.load`). One code path sends server-side apply
(`application/apply-patch+yaml`; JSON is YAML) for every kind with one field manager, and no
typed models (which drop unknown fields and make "compare desired with live" lossy). The
official client is not used: its modules alone cost the operator about 20 MiB (issue 11).
kopf keeps its own client for watching. Every call here is synchronous; reconciles run in
worker threads.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import secrets as _secrets
from collections.abc import Mapping
from typing import Any, Protocol

from authz_operator import credentials
from authz_operator import resources as r
from authz_operator.apiclient import ApiClient, ConnectionFailed
from authz_operator.kinds import KINDS, Kind
from authz_operator.lifecycle import SecretView
from authz_operator.status import Event, timestamp

Obj = dict[str, Any]


class Transport(Protocol):
    """What `Kube` sends through (`apiclient.ApiClient`; tests give a fake)."""

    def send(self, method: str, path: str, query: list[tuple[str, str]],
             body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]: ...

    def close(self) -> None: ...


__all__ = ["KINDS", "Kind", "Kube", "KubeError"]


class KubeError(Exception):
    """An API call failed. `transient` tells whether trying again later may help."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"{method} {path}: {status} {message}")
        self.status = status
        self.message = message

    @property
    def transient(self) -> bool:
        return self.status in (0, 409, 429) or self.status >= 500


class Kube:
    """Synchronous, dict-based access to the API server with one field manager."""

    def __init__(self, api: Transport, field_manager: str = r.FIELD_MANAGER) -> None:
        self.api = api
        self.field_manager = field_manager

    @classmethod
    def connect(cls, kubeconfig: str | None = None) -> Kube:
        """In-cluster credentials when running in a pod, else the kubeconfig
        (`credentials.load`)."""
        return cls(ApiClient(credentials.load(kubeconfig, os.environ)))

    def close(self) -> None:
        self.api.close()

    # -- HTTP ------------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, query: list[tuple[str, str]] | None = None,
              body: Any = None, content_type: str = "application/json",
              accept: str = "application/json") -> Any:
        headers = {"Accept": accept}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        try:
            status, raw = self.api.send(method, path, query or [], data, headers)
        except ConnectionFailed as exc:   # no answer: status 0, transient
            raise KubeError(method, path, 0, str(exc)) from exc
        if status >= 400:
            message = raw.decode(errors="replace")
            with contextlib.suppress(ValueError, AttributeError):
                message = json.loads(raw).get("message", message)
            raise KubeError(method, path, status, message)
        return json.loads(raw) if raw else None

    # -- objects ---------------------------------------------------------------------------

    def list_metadata(self, kind: str, namespace: str, label_selector: str = "",
                      field_selector: str = "") -> tuple[list[Obj], int | None]:
        """The objects' metadata only (PartialObjectMetadataList: no spec, no Secret value),
        and the list's resourceVersion as a number (`trim.resource_version`)."""
        query = [(name, value) for name, value in (("labelSelector", label_selector),
                                                   ("fieldSelector", field_selector)) if value]
        out = self._call("GET", KINDS[kind].path(namespace), query=query,
                         accept="application/json;as=PartialObjectMetadataList;"
                                "g=meta.k8s.io;v=v1, application/json")
        version = str((out.get("metadata") or {}).get("resourceVersion") or "")
        return list(out.get("items") or []), int(version) if version.isdigit() else None

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self._get_path(KINDS[kind].path(namespace, name))

    def exists(self, path: str) -> bool:
        """Whether the object at an API path exists (for objects of kinds we do not make)."""
        return self._get_path(path) is not None

    def _get_path(self, path: str) -> Obj | None:
        """The object at `path`; None if there is none (404)."""
        try:
            obj: Obj = self._call("GET", path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def list(self, kind: str, namespace: str, label_selector: str) -> list[Obj]:
        out = self._call("GET", KINDS[kind].path(namespace),
                         query=[("labelSelector", label_selector)])
        return list(out.get("items") or [])

    def apply(self, obj: Mapping[str, Any], field_manager: str | None = None) -> Obj:
        """Server-side apply with our field manager (or `field_manager`); we own every field
        we send."""
        meta = obj["metadata"]
        kind = KINDS[str(obj["kind"])]
        result: Obj = self._call(
            "PATCH", kind.path(meta["namespace"], meta["name"]),
            query=[("fieldManager", field_manager or self.field_manager), ("force", "true")],
            body=obj, content_type="application/apply-patch+yaml")
        return result

    def overwrite(self, obj: Mapping[str, Any]) -> Obj:
        """JSON merge patch of the desired object: lists are replaced as a whole.

        Used to repair drift that server-side apply cannot: list items another manager
        added (e.g. a second port from `kubectl patch`) survive an apply by design."""
        meta = obj["metadata"]
        result: Obj = self._call(
            "PATCH", KINDS[str(obj["kind"])].path(meta["namespace"], meta["name"]),
            query=[("fieldManager", self.field_manager)], body=obj,
            content_type="application/merge-patch+json")
        return result

    def delete(self, kind: str, namespace: str, name: str, uid: str | None = None,
               orphan: bool = False) -> Obj | None:
        """Delete, with the dependents (Background) or leaving them be (`orphan`). Returns
        what the API server answered: the object while finalizers keep it (an orphaning
        delete), else a Status; None when it was gone already (404) or `uid` is no longer
        its uid (409)."""
        body: Obj = {"apiVersion": "v1", "kind": "DeleteOptions",
                     "propagationPolicy": "Orphan" if orphan else "Background"}
        if uid is not None:
            body["preconditions"] = {"uid": uid}
        try:
            result: Obj | None = self._call("DELETE", KINDS[kind].path(namespace, name),
                                            body=body)
        except KubeError as exc:
            if exc.status not in (404, 409):
                raise
            return None
        return result

    def patch_status(self, namespace: str, name: str, old: Mapping[str, Any],
                     new: Mapping[str, Any]) -> Obj:
        """Merge-patch status to `new`, nulling keys that disappeared."""
        patch = {k: None for k in old if k not in new}
        patch.update(new)
        result: Obj = self._call(
            "PATCH", KINDS["AuthorizationService"].path(namespace, name, "status"),
            query=[("fieldManager", self.field_manager)], body={"status": patch},
            content_type="application/merge-patch+json")
        return result

    def post_event(self, owner: Mapping[str, Any], event: Event,
                   now: datetime.datetime) -> None:
        meta = owner["metadata"]
        ns = meta["namespace"]
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{_secrets.token_hex(8)}", "namespace": ns},
            "involvedObject": {
                "apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"],
                "namespace": ns, "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": event.type, "reason": event.reason, "message": event.message[:1024],
            "source": {"component": self.field_manager},
            "reportingComponent": self.field_manager,
            "reportingInstance": self.field_manager,
            "firstTimestamp": timestamp(now), "lastTimestamp": timestamp(now), "count": 1,
        }
        self._call("POST", KINDS["Event"].path(ns), body=body)

    def secret_view(self, namespace: str, name: str) -> SecretView | None:
        """Only the Secret's version and key names leave this function, never its values."""
        obj = self.get("Secret", namespace, name)
        if obj is None:
            return None
        keys = set((obj.get("data") or {}).keys()) | set((obj.get("stringData") or {}).keys())
        return SecretView(resource_version=str(obj["metadata"]["resourceVersion"]),
                          keys=frozenset(keys))
