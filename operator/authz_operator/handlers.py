"""kopf glue: what wakes a reconcile. No object building and no API calls here.

Whatever wakes it (create, update, resume, a child changed or deleted, a referenced Secret
changed), the same `Reconciler.run` computes the whole desired state again: level-based.
There is no delete handler, no timer and no daemon, so kopf puts no finalizer on the
resource: deleting it never hangs, even with the operator down; owner references let the
garbage collector remove the children.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import kopf

from authz_operator import indexes, indexgate, kinds, lifecycle, metrics, peering, watchjson
from authz_operator.cache import WatchCache, values
from authz_operator.diffbase import LeanProgressStorage, MemoryDiffBaseStorage
from authz_operator.kube import Kube, KubeError
from authz_operator.labels import KOPF_ANNOTATION_PREFIX, MANAGED, watch_fields, watch_selector
from authz_operator.main import CLUSTER_PEERING_ENV, watched_namespaces
from authz_operator.news import Check
from authz_operator.pacing import StatusPace
from authz_operator.reconciler import Reconciler
from authz_operator.resync import Relists, Resync
from authz_operator.spec import GROUP, KIND, PLURAL, VERSION, raw_secret_names
from authz_operator.wakeups import Wakeups

log = logging.getLogger("authz_operator.handlers")

CR = (GROUP, VERSION, PLURAL)
CHILD_RESOURCES = tuple((k.group, k.version, k.plural) for k in kinds.WATCHED)
SELECTED_KINDS = kinds.WATCHED   # watched by our label only
RETRIES = 3
# Handler ids: kopf's, and the `handler` label of authz_operator_reconciles_total and
# authz_operator_handler_errors_total.
RECONCILE, SECRET_CHANGED, GONE = "reconcile", "secret_changed", "resource_gone"
RESYNC = "resync"   # not a kopf handler: resync.py wakes a resource whose child was deleted
PROGRESS = "status_progress"   # not a kopf handler: a paced status write (pacing.py)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    # kopf's own bookkeeping goes to annotations under our prefix: status has one writer (us).
    # kopf's own storages, without deep copies; the last-handled essence in memory, not in
    # an annotation that costs a write of the resource per change (diffbase.py)
    settings.persistence.progress_storage = LeanProgressStorage(prefix=KOPF_ANNOTATION_PREFIX)
    handled = MemoryDiffBaseStorage(prefix=KOPF_ANNOTATION_PREFIX,
                                    key="last-handled-configuration", changing={(GROUP, KIND)})
    settings.persistence.diffbase_storage = handled
    memo["handled"] = handled
    if not indexgate.install():
        log.warning("kopf's watcher changed: a namespace deleted while this replica is "
                    "paused may stop it from handling anything until it restarts")
    if not watchjson.install():
        log.warning("kopf's watch events are parsed by the json module (kopf changed): "
                    "slower, not wrong")
    settings.persistence.finalizer = f"{KOPF_ANNOTATION_PREFIX}/finalizer"
    # We post our own events with searchable reasons; kopf posts only real problems.
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = int(os.environ.get("AUTHZ_WORKERS", "8"))
    objects = logging.getLogger("kopf.objects")
    for old in [f for f in objects.filters if isinstance(f, QuietWatchers)]:
        objects.removeFilter(old)   # tests start the operator again and again in one process
    objects.addFilter(QuietWatchers())
    settings.watching.server_timeout = 270
    # kopf lists and watches only our own objects of the kinds we make (children, Jobs, the
    # running serving pods), by selectors the API server applies, not every pod
    # and ConfigMap of the cluster: each object it does not send costs neither its parsing
    # nor kopf's per-object state (issue 11). Secrets (a team's own) and the resources stay
    # whole.
    # An owned child someone took our label from leaves the watch (a DELETED event, which
    # wakes its owner); the GET that guards a create (reconciler.confirm_creates) finds it,
    # and the reconcile puts the label back.
    for kind in SELECTED_KINDS:
        settings.watching.label_selectors[kind.group, kind.version, kind.plural] = \
            watch_selector(kind.kind)
        if watch_fields(kind.kind):
            settings.watching.field_selectors[kind.group, kind.version, kind.plural] = \
                watch_fields(kind.kind)
    # After its own patch (now only the progress of a handler that failed and is retried),
    # kopf waits this long for the patched version to come back on the watch before it
    # trusts an older event. At 1,000 resources the watch lagged more than kopf's 5 s (issue
    # 11). A newer event ends the wait at once.
    settings.persistence.consistency_timeout = 60
    if os.environ.get(CLUSTER_PEERING_ENV) == "1" and not settings.peering.standalone:
        # kopf picks namespaced peering for any --namespace; a pattern spans the cluster.
        settings.peering.clusterwide = True
    # A replica starts paused until the peering object shows it is the one to act
    # (peering.py says why).
    settings.peering.mandatory = not settings.peering.standalone
    metrics_port = os.environ.get("AUTHZ_METRICS_PORT")
    if metrics_port and not isinstance(memo.get("metrics"), metrics.Server):
        memo["metrics"] = metrics.Server(int(metrics_port))
    kube = Kube.connect(os.environ.get("AUTHZ_KUBECONFIG") or None)
    if settings.peering.mandatory:
        peering.say_if_missing(kube, peering.object_paths(
            settings.peering.name, settings.peering.clusterwide, watched_namespaces(os.environ)))
    # Reconciles read children, Jobs, pods and Secrets from kopf's indexes
    # (cache.py says what kopf guarantees); the indexes exist from now on, filled before
    # any resource handler runs.
    cache = WatchCache(kube, indexes.from_kwargs(kwargs))
    pace = StatusPace()
    memo["reconciler"] = Reconciler(kube, reads=cache, pace=pace)
    wakeups = Wakeups(
        lambda namespace, name, why, handler: _reconcile_quietly(
            memo, namespace, name, why, handler),
        settings.execution.max_workers or 8)
    _replace(memo, "wakeups", wakeups)
    pace.later = lambda namespace, name, delay: wakeups.later(
        namespace, name, delay, "the rollout's progress", PROGRESS)
    refs: kopf.Index[tuple[str, str], str] = kwargs["secret_refs"]

    def wake(namespace: str, name: str, why: str) -> None:
        _reconcile_quietly(memo, namespace, name, why, RESYNC)

    def readers(namespace: str, secret: str) -> list[str]:
        return sorted(set(values(refs, (namespace, secret))))

    resync = Resync(cache, kube, Relists(), wake, readers)
    _replace(memo, "resync", resync)
    resync.start()


class QuietWatchers(logging.Filter):
    """Drops kopf's "Handler 'child-pods' succeeded." line of every event handler here: they
    only mark a resource (the reconcile logs what it does) or forget one. At 1,000 resources
    they were two thirds of the operator's log (issue 11); their failures still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and record.msg in QUIET_LINES)


def _replace(memo: kopf.Memo, key: str, new: Wakeups | Resync) -> None:
    """Keep `new` under `key`, stopping what an earlier run of the operator in this process
    left there (tests run it again and again in one process)."""
    previous = memo.get(key)
    if isinstance(previous, Wakeups | Resync):
        previous.stop()
    memo[key] = new


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    wakeups = memo.get("wakeups")
    if isinstance(wakeups, Wakeups):   # first: its reconciles use the client closed below
        await asyncio.to_thread(wakeups.stop)
    resync = memo.get("resync")
    if isinstance(resync, Resync):
        resync.stop()
    reconciler = memo.get("reconciler")
    if isinstance(reconciler, Reconciler):
        reconciler.kube.close()
    server = memo.get("metrics")
    if isinstance(server, metrics.Server):
        server.stop()


def _reconciler(memo: kopf.Memo) -> Reconciler:
    reconciler = memo["reconciler"]
    assert isinstance(reconciler, Reconciler)
    return reconciler


@kopf.on.resume(*CR, id=RECONCILE)
@kopf.on.create(*CR, id=RECONCILE)
@kopf.on.update(*CR, id=RECONCILE)
def reconcile(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    """The resource itself changed (or the operator started): reconcile it."""
    assert namespace is not None, "AuthorizationService is namespaced"
    try:
        with metrics.counting_errors(RECONCILE):
            plan = _reconciler(memo).run(namespace, name, handler=RECONCILE)
    except KubeError as exc:
        delay = 5 if exc.transient else 30
        raise kopf.TemporaryError(str(exc), delay=delay) from exc
    if plan is not None and plan.permanent_error:
        raise kopf.PermanentError(plan.permanent_error)


def _owner_name(body: Mapping[str, Any]) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("apiVersion", "").startswith(f"{GROUP}/"):
            return str(ref["name"])
    return None


def _reconcile_quietly(memo: kopf.Memo, namespace: str, name: str, why: str,
                       handler: str) -> None:
    """Reconcile after someone else's event; kopf does not retry event handlers, so a
    transient API failure is retried here a few times before waiting for the next event."""
    for attempt in range(RETRIES):
        try:
            with metrics.counting_errors(handler):
                _reconciler(memo).run(namespace, name, coalesce=True, handler=handler)
            return
        except KubeError as exc:
            log.warning("%s/%s: reconcile after %s failed: %s", namespace, name, why, exc)
            if not exc.transient or attempt == RETRIES - 1:
                return
            time.sleep(2**attempt)  # always a worker thread, never the event loop


async def _on_child(body: kopf.Body, namespace: str | None, memo: kopf.Memo,
                    type: str | None, resource: kopf.Resource, **_: Any) -> None:
    """A child was changed or deleted (by us, a controller or a person): reconcile the owner,
    once per burst of such events (wakeups.py). Runs on the event loop: no thread, no wait."""
    owner = _owner_name(body)
    if owner is None and body.get("kind") == "Pod":
        owner = (body.get("metadata", {}).get("labels") or {}).get("app.kubernetes.io/instance")
    if type is None:   # noticed by a listing: the operator's start, or a watch listing again
        _noticed(memo, str(resource.kind))
    news = _watched(memo, type, str(resource.kind), namespace, body) if namespace else True
    wakeups = memo.get("wakeups")
    if owner and namespace and isinstance(wakeups, Wakeups):
        handler = child_handler(resource.plural)
        if news is False:
            metrics.not_news(handler)
        else:
            wakeups.wake(namespace, owner, f"{body.get('kind')} event", handler,
                         unless=None if news is True else news)


def _watched(memo: kopf.Memo, type: str | None, kind: str, namespace: str,
             body: Mapping[str, Any]) -> bool | Check:
    """The watch delivered `body` (kopf updated the indexes first): the cache drops its own
    copy of a deleted object, or a written copy this version covers. Whether a child's
    event is news to a reconcile, or the check that tells later (news.py)."""
    reads = _reconciler(memo).reads
    if not isinstance(reads, WatchCache):
        return True
    meta = body.get("metadata", {})
    if type == "DELETED":   # the index has dropped it: drop our copy too
        reads.forget(kind, namespace, str(meta.get("name")), meta.get("uid"))
    else:
        reads.seen(kind, namespace, str(meta.get("name")), meta.get("resourceVersion"))
    return reads.known.delivered(type, kind, body)


def _noticed(memo: kopf.Memo, kind: str) -> None:
    resync = memo.get("resync")
    if isinstance(resync, Resync):
        resync.relists.noticed(kind)


def child_handler(plural: str) -> str:
    return f"child-{plural}"


# The API server sends only objects with our label (`configure`); a child that loses it
# leaves the selection with a DELETED event that carries its previous state, label and all,
# so this filter lets it through and its owner is woken.
for _group, _version, _plural in CHILD_RESOURCES:
    if _plural != kinds.POD.plural:
        kopf.on.event(_group, _version, _plural, labels=MANAGED,
                      id=child_handler(_plural))(_on_child)


def _pod_matters(body: kopf.Body, type: str | None, **_: Any) -> bool:
    """A serving pod's event wakes its resource only when a container crash-loops (what a
    rollout acts on before its progress deadline), or when a listing noticed it (resync).
    Its readiness reaches the resource as the Deployment's status: three pods' Pending,
    Running and Ready each woke a reconcile that found nothing new (issue 11). A pending
    pod's events are not even sent (`labels.watch_fields`)."""
    return type is None or lifecycle.crash_looping(body)


kopf.on.event(kinds.POD.group, kinds.POD.version, kinds.POD.plural, labels=MANAGED,
              when=_pod_matters, id=child_handler(kinds.POD.plural))(_on_child)


@kopf.on.event(*CR, id=GONE)
async def resource_gone(type: str | None, namespace: str | None, name: str, memo: kopf.Memo,
                        body: kopf.Body, **_: Any) -> None:
    """Without a finalizer there is no delete handler: a DELETED watch event drops the
    resource's metric series, its reconcile lock and kopf's memory of it; every event lets
    the cache drop a status it wrote that this version covers. Async: it runs for every
    event of every resource, and kopf handles an object's events one after the other; in a
    thread it would queue behind the reconciles for one (issue 11). The calls only take a
    lock briefly."""
    if namespace is None:
        return
    if type == "DELETED":
        metrics.forget(namespace, name)
        _reconciler(memo).forget(namespace, name)
        handled = memo.get("handled")
        if isinstance(handled, MemoryDiffBaseStorage) and body.metadata.uid:
            handled.forget(body.metadata.uid)
    _watched(memo, type, KIND, namespace, body)


# kopf's success line (kopf/_core/actions/execution.py) of each event handler above
QUIET_LINES = frozenset(f"Handler {handler_id!r} succeeded." for handler_id in (
    *(child_handler(plural) for _, _, plural in CHILD_RESOURCES), GONE,
    SECRET_CHANGED))


@kopf.index(*CR)
async def secret_refs(namespace: str | None, name: str, spec: kopf.Spec,
                      **_: Any) -> dict[tuple[str, str], str]:
    """(namespace, Secret name) -> the AuthorizationServices that read it. Async, as the
    indexes in indexes.py: kopf runs a sync function in its executor, where every event of
    every resource then waited for a thread among the reconciles (issue 11)."""
    return {(namespace or "", secret): name for secret in sorted(raw_secret_names(spec))}


def _is_referenced(namespace: str | None, name: str, **kwargs: Any) -> bool:
    index: kopf.Index[tuple[str, str], str] = kwargs["secret_refs"]
    return (namespace or "", name) in index


@kopf.on.event("", "v1", "secrets", when=_is_referenced, id=SECRET_CHANGED)
def secret_changed(namespace: str | None, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    """A referenced Secret appeared, changed or vanished: reconcile its readers."""
    index: kopf.Index[tuple[str, str], str] = kwargs["secret_refs"]  # the index above
    if kwargs.get("type") is None:
        _noticed(memo, "Secret")
    if namespace is None:
        return
    for owner in sorted(set(index.get((namespace, name), []))):
        _reconcile_quietly(memo, namespace, owner, f"Secret {name} event", SECRET_CHANGED)
