"""Small readings of what was observed: ownership, Secrets, availability, crashes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from authz_operator import resources as r
from authz_operator.lifecycle.model import Obj, SecretView
from authz_operator.spec import Spec
from authz_operator.status import Condition, Reason


def controlled_by(obj: Mapping[str, Any], owner: r.Owner) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner.uid and ref.get("controller") for ref in refs)


def missing_secret_keys(spec: Spec, secrets: Mapping[str, SecretView | None]) -> list[str]:
    """Human-readable list of what is missing: 'Secret s' or 'key k in Secret s'."""
    out: list[str] = []
    for var, ref in spec.secret_refs():
        view = secrets.get(ref.name)
        if view is None:
            item = f"Secret {ref.name!r} (for {var})"
        elif ref.key not in view.keys:
            item = f"key {ref.key!r} in Secret {ref.name!r} (for {var})"
        else:
            continue
        if item not in out:
            out.append(item)
    return out


def deployment_available(dep: Mapping[str, Any] | None) -> Condition:
    if dep is None:
        return Condition("Available", False, Reason.DEPLOYMENT_MISSING,
                         "the Deployment does not exist yet")
    for c in (dep.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Available":
            return Condition("Available", c.get("status") == "True",
                             str(c.get("reason") or Reason.AVAILABLE),
                             str(c.get("message") or ""))
    return Condition("Available", None, "Unknown", "the Deployment reports no availability yet")


def revision_key(image: str, config_hash: str, secrets_hash: str) -> str:
    return r.content_hash([image, config_hash, secrets_hash])


def min_replicas(spec: Spec) -> int:
    return spec.autoscaling.min_replicas if spec.autoscaling.enabled else spec.replicas


def replica_fields(spec: Spec | None, dep: Mapping[str, Any] | None, name: str) -> Obj:
    desired = min_replicas(spec) if spec is not None else 0
    if dep is not None:
        replicas = int(dep.get("spec", {}).get("replicas", 1))
        desired = max(desired, replicas) if spec is not None and spec.autoscaling.enabled \
            else replicas
    st = (dep or {}).get("status") or {}
    ready = int(st.get("readyReplicas", 0))
    selector = r.selector_string(r.serving_selector(name))
    return {"replicas": int(st.get("replicas", 0)), "readyReplicas": ready,
            "ready": f"{ready}/{desired}", "selector": selector}


# ---------------------------------------------------------------------------------------------
# the decision



def crash_message(pods: Sequence[Mapping[str, Any]], image: str) -> str | None:
    """Why pods of `image` crash (CrashLoopBackOff), or None: the kubelet's reason for the
    last exit (OOMKilled, Error) and its exit code first, then its back-off message."""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if (cs.get("image") == image or _pod_image(pod) == image) and _crash_looping(cs):
                last = (cs.get("lastState") or {}).get("terminated") or {}
                cause = (f"{last['reason']} (exit code {last.get('exitCode')}); "
                         if last.get("reason") else "")
                return (f"pod {pod['metadata']['name']} crashes: {cause}"
                        f"{waiting.get('message') or 'CrashLoopBackOff'}")
    return None


def crash_looping(pod: Mapping[str, Any]) -> bool:
    """Whether a container of the pod crashes (of any image): the only pod state a reconcile
    acts on, so the only pod event that wakes one (`handlers`). Readiness is the
    Deployment's status, which wakes it anyway."""
    return any(_crash_looping(cs) for cs in
               (pod.get("status") or {}).get("containerStatuses") or [])


def _crash_looping(cs: Mapping[str, Any]) -> bool:
    waiting = (cs.get("state") or {}).get("waiting") or {}
    return waiting.get("reason") == "CrashLoopBackOff" and int(cs.get("restartCount", 0)) >= 1


def _pod_image(pod: Mapping[str, Any]) -> str | None:
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    image = containers[0].get("image")
    return str(image) if image else None



def live_target(dep: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """(image, config-hash) the live Deployment's pods run."""
    if dep is None:
        return None, None
    tmpl = dep.get("spec", {}).get("template", {})
    image = (tmpl.get("spec", {}).get("containers") or [{}])[0].get("image")
    return image, (tmpl.get("metadata", {}).get("annotations") or {}).get(r.ANN_CONFIG_HASH)

