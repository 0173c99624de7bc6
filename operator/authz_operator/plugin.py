"""`kubectl authz ...` (console script `kubectl-authz`): a thin CLI over pykube-ng.

    kubectl authz status NAME            the resource, its conditions, children, last events
    kubectl authz history NAME           recorded revisions
    kubectl authz rollback NAME [--to-revision N]   ask the operator to roll back
    kubectl authz retry NAME             retry a failed target
    kubectl authz pause NAME | resume NAME

Each takes `-n/--namespace`, `--kubeconfig` and `--context` like kubectl. The plugin never
changes children itself: it reads, or it writes the annotations/spec field the operator acts
on. Formatting is done by pure functions (`format_status`, `format_history`,
`rollback_revision`, `child_health`) so it is unit-tested without a cluster.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from authz_operator import kinds
from authz_operator import resources as r
from authz_operator.labels import MANAGED
from authz_operator.spec import KIND
from authz_operator.status import Outcome
from authz_operator.workload import JobState, Replicas, job_endings, job_state

Obj = Mapping[str, Any]
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EVENTS_SHOWN = 10
_DEPLOYED = (Outcome.DEPLOYED, Outcome.ROLLED_BACK)   # revisions one may roll back to


class PluginError(Exception):
    """A problem the user can fix (missing resource or revision, ...): one line, exit 1."""


# ---------------------------------------------------------------------------------------------
# pure: what to show and what to write


@dataclass(frozen=True)
class Child:
    kind: str
    name: str
    obj: Obj | None          # None: it does not exist


def _age(stamp: str | None, now: datetime.datetime) -> str:
    if not stamp:
        return "?"
    when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    seconds = max(0, int((now - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def child_health(kind: str, obj: Obj | None) -> tuple[bool, str]:
    """(healthy?, one-line summary) of one child, as `kubectl get` would tell it."""
    if obj is None:
        return False, "missing"
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    if kind == "Deployment":
        n = Replicas.of(obj)
        image = ",".join(c.get("image", "?") for c in
                         spec.get("template", {}).get("spec", {}).get("containers", []))
        healthy = n.ready >= n.wanted and n.updated >= n.wanted
        return healthy, f"{n.ready}/{n.wanted} ready, {n.updated} updated, {image}"
    if kind == "Job":
        return _job_health(obj)
    if kind == "HorizontalPodAutoscaler":
        return True, (f"{st.get('currentReplicas', 0)} replicas "
                      f"(min {spec.get('minReplicas', 1)}, max {spec.get('maxReplicas', '?')})")
    if kind == "Service":
        ports = ",".join(str(p.get("port")) for p in spec.get("ports") or [])
        return True, f"{spec.get('type', 'ClusterIP')} {spec.get('clusterIP', '')}:{ports}"
    if kind == "PodDisruptionBudget":
        allowed = st.get("disruptionsAllowed", 0)
        return True, f"{allowed} disruption(s) allowed"
    if kind == "Ingress":
        hosts = ",".join(rule.get("host", "*") for rule in spec.get("rules") or [])
        return True, hosts or "no rules"
    if kind == "ConfigMap":
        return True, f"{len(obj.get('data') or {})} keys"
    return True, "present"


def _job_health(job: Obj) -> tuple[bool, str]:
    state, st = job_state(job), job.get("status") or {}
    if state is JobState.FAILED:
        end = job_endings(job)[0]
        return False, f"failed: {end.get('reason', '')} {end.get('message', '')}".strip()
    if state is JobState.SUCCEEDED:
        return True, "complete"
    active, failed = int(st.get("active", 0)), int(st.get("failed", 0))
    return True, f"running ({active} active, {failed} failed)"


def _condition_mark(cond: Obj) -> str:
    status = cond.get("status")
    if status == "Unknown":
        return "?"
    bad = (status == "True") if cond.get("type") == "Degraded" else (status == "False")
    if cond.get("type") == "Progressing":
        return "~" if status == "True" else "+"
    return "x" if bad else "+"


def _tree(title: str, items: Sequence[str], last: bool) -> list[str]:
    lines = [("└─ " if last else "├─ ") + title]
    pad = "   " if last else "│  "
    for i, item in enumerate(items):
        lines.append(pad + ("└─ " if i == len(items) - 1 else "├─ ") + item)
    return lines


def _event_time(event: Obj) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime")
               or event.get("firstTimestamp") or event.get("metadata", {}).get(
                   "creationTimestamp") or "")


def format_status(body: Obj, children: Sequence[Child], events: Sequence[Obj],
                  now: datetime.datetime) -> str:
    """The resource as a tree: summary, conditions, children with health, last events."""
    meta, spec, st = body["metadata"], body.get("spec") or {}, body.get("status") or {}
    head = f"{KIND} {meta['namespace']}/{meta['name']}"
    summary = [
        f"Phase: {st.get('phase', '-')}",
        f"Ready: {st.get('ready', '-')}",
        f"Revision: {st.get('revision', '-')}",
        f"Schema: {st.get('schemaVersion', '-')}",
    ]
    lines = [head, "├─ " + "   ".join(summary)]
    lines.append(f"├─ Image: {st.get('image', '-')}"
                 + (f" (spec: {spec.get('image')})" if spec.get("image") != st.get("image")
                    else ""))
    if spec.get("paused"):
        lines.append("├─ Paused: spec.paused is true, children are left as they are")
    generation, observed = meta.get("generation"), st.get("observedGeneration")
    if observed is not None and generation != observed:
        lines.append(f"├─ Generation {generation} not yet observed (status is of {observed})")
    conds = [
        f"[{_condition_mark(c)}] {c.get('type')}={c.get('status')} {c.get('reason', '')}: "
        f"{c.get('message', '')} ({_age(c.get('lastTransitionTime'), now)} ago)"
        for c in st.get("conditions") or []
    ]
    lines += _tree("Conditions", conds or ["none reported yet"], last=False)
    kids = []
    for child in children:
        ok, text = child_health(child.kind, child.obj)
        kids.append(f"[{'+' if ok else 'x'}] {child.kind} {child.name}: {text}")
    lines += _tree("Children", kids or ["none"], last=False)
    recent = sorted(events, key=_event_time)[-EVENTS_SHOWN:]
    evs = [
        f"{_age(_event_time(e), now):>4} {e.get('type', ''):<7} {e.get('reason', '')}"
        f" ({e.get('involvedObject', {}).get('kind', '')}): {e.get('message', '')}"
        for e in recent
    ]
    lines += _tree(f"Events (last {EVENTS_SHOWN})", evs or ["none"], last=True)
    return "\n".join(lines)


def format_history(body: Obj) -> str:
    """status.history as a table, newest last; the serving revision is marked with `*`."""
    st = body.get("status") or {}
    history = st.get("history") or []
    if not history:
        return f"{body['metadata']['name']}: no revisions recorded yet"
    serving = st.get("revision")
    rows = [("", "REVISION", "IMAGE", "SCHEMA", "CONFIG", "OUTCOME", "DEPLOYED", "MESSAGE")]
    for h in history:
        rows.append(("*" if h.get("revision") == serving else "", str(h.get("revision", "")),
                     str(h.get("image", "")), str(h.get("schemaVersion", "")),
                     str(h.get("configHash", ""))[:8], str(h.get("outcome", "")),
                     str(h.get("deployedAt", "")), str(h.get("message", ""))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        ("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True))
         + "  " + row[-1]).rstrip()
        for row in rows)


def rollback_revision(body: Obj, to: int | None) -> int:
    """The revision to roll back to: `to` if recorded and deployable, else the newest deployed
    revision before the serving one."""
    st = body.get("status") or {}
    history = [h for h in st.get("history") or [] if isinstance(h.get("revision"), int)]
    serving = st.get("revision")
    name = body["metadata"]["name"]
    if to is not None:
        entry = next((h for h in history if h["revision"] == to), None)
        if entry is None:
            known = ", ".join(str(h["revision"]) for h in history) or "none"
            raise PluginError(f"{name}: revision {to} is not recorded (recorded: {known})")
        if to == serving:
            raise PluginError(f"{name}: revision {to} is the one serving now")
        if entry.get("outcome") not in (None, *_DEPLOYED):
            raise PluginError(f"{name}: revision {to} never deployed successfully "
                              f"(outcome {entry.get('outcome')})")
        return to
    candidates = [h["revision"] for h in history
                  if h["revision"] != serving and h.get("outcome") in _DEPLOYED
                  and (serving is None or h["revision"] < serving)]
    if not candidates:
        raise PluginError(f"{name}: no earlier deployed revision to roll back to")
    return int(max(candidates))


def annotation_patch(key: str, value: str) -> dict[str, Any]:
    return {"metadata": {"annotations": {key: value}}}


def paused_patch(paused: bool) -> dict[str, Any]:
    return {"spec": {"paused": paused}}


# ---------------------------------------------------------------------------------------------
# I/O: pykube-ng


def _kinds() -> dict[str, Any]:
    """pykube object classes for the kinds the plugin reads (kinds.PLUGIN_KINDS)."""
    from pykube.objects import NamespacedAPIObject

    return {k.kind: type(k.kind, (NamespacedAPIObject,),
                         {"version": k.api_version, "endpoint": k.plural, "kind": k.kind})
            for k in kinds.PLUGIN_KINDS}


class Client:
    def __init__(self, kubeconfig: str | None, context: str | None,
                 namespace: str | None) -> None:
        import pykube

        path = kubeconfig or (os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None)
        if path is None and os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token"):
            config = pykube.KubeConfig.from_service_account()
        else:
            config = pykube.KubeConfig.from_file(path)
        if context:
            config.set_current_context(context)
        self.api = pykube.HTTPClient(config)
        self.namespace = namespace or config.namespace
        self.kinds = _kinds()

    def get(self, kind: str, name: str) -> Any | None:
        from pykube.exceptions import ObjectDoesNotExist

        try:
            return self.kinds[kind].objects(self.api, namespace=self.namespace).get_by_name(name)
        except ObjectDoesNotExist:
            return None

    def resource(self, name: str) -> Any:
        obj = self.get(KIND, name)
        if obj is None:
            raise PluginError(f'{KIND} "{name}" not found in namespace "{self.namespace}"')
        return obj

    def children(self, name: str) -> list[Child]:
        out = [Child(kind, r.child_name(name, kind), None) for kind in r.OWNED_KINDS]
        out = [Child(c.kind, c.name, (o.obj if (o := self.get(c.kind, c.name)) else None))
               for c in out]
        jobs = self.kinds["Job"].objects(self.api, namespace=self.namespace).filter(
            selector={"app.kubernetes.io/instance": name, **MANAGED})
        out += [Child("Job", j.name, j.obj) for j in sorted(jobs, key=lambda j: j.name)]
        # optional children that are absent on purpose are not news
        return [c for c in out if c.obj is not None or c.kind not in kinds.OPTIONAL_KINDS]

    def events(self, name: str, children: Sequence[Child]) -> list[Obj]:
        wanted = {(KIND, name)} | {(c.kind, c.name) for c in children}
        events = self.kinds["Event"].objects(self.api, namespace=self.namespace)
        return [e.obj for e in events
                if (e.obj.get("involvedObject", {}).get("kind"),
                    e.obj.get("involvedObject", {}).get("name")) in wanted]


# ---------------------------------------------------------------------------------------------
# CLI


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        print(f"kubectl-authz: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    common.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG)")
    common.add_argument("--context", help="kubeconfig context")
    p = _Parser(prog="kubectl authz", parents=[common],
                description="Inspect and steer AuthorizationServices (rwadurian.io).")
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (("status", "the resource, its conditions, children and last events"),
                        ("history", "recorded revisions"),
                        ("retry", "retry the last failed target"),
                        ("pause", "freeze the children (spec.paused=true)"),
                        ("resume", "reconcile again (spec.paused=false)")):
        cmd = sub.add_parser(name, help=help_, parents=[common])
        cmd.add_argument("name")
    rollback = sub.add_parser("rollback", help="roll back to a recorded revision",
                              parents=[common])
    rollback.add_argument("name")
    rollback.add_argument("--to-revision", type=int, metavar="N",
                          help="revision (default: the newest deployed before the serving one)")
    return p


def run(args: argparse.Namespace, client: Client, now: datetime.datetime) -> str:
    body = client.resource(args.name)
    if args.command == "status":
        children = client.children(args.name)
        return format_status(body.obj, children, client.events(args.name, children), now)
    if args.command == "history":
        return format_history(body.obj)
    if args.command == "rollback":
        revision = rollback_revision(body.obj, args.to_revision)
        body.patch(annotation_patch(r.ANN_ROLLBACK_TO, str(revision)))
        return f"{KIND} {args.name}: rollback to revision {revision} requested"
    if args.command == "retry":
        stamp = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body.patch(annotation_patch(r.ANN_RETRY, stamp))
        return f"{KIND} {args.name}: retry requested ({r.ANN_RETRY}={stamp})"
    paused = args.command == "pause"
    if bool((body.obj.get("spec") or {}).get("paused")) == paused:
        return f"{KIND} {args.name}: already {'paused' if paused else 'running'}"
    body.patch(paused_patch(paused))
    return f"{KIND} {args.name}: {'paused' if paused else 'resumed'}"


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from pykube.exceptions import HTTPError, PyKubeError

    try:
        client = Client(args.kubeconfig, args.context, args.namespace)
        print(run(args, client, datetime.datetime.now(datetime.UTC)))
    except PluginError as exc:
        print(f"kubectl-authz: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (HTTPError, PyKubeError, OSError) as exc:   # API refusals, unreachable server
        print(f"kubectl-authz: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK
