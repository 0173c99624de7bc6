"""Steps 1 and 2: the hold (and a manual rollback request), then the target revision."""

from __future__ import annotations

from dataclasses import dataclass

from authz_operator import resources as r
from authz_operator.lifecycle.observe import live_target
from authz_operator.lifecycle.situation import Draft, Situation, revision_key
from authz_operator.lifecycle.state import Hold, HoldReason, Revision
from authz_operator.status import Event, Reason


def hold_and_rollback_request(sit: Situation, draft: Draft) -> Hold | None:
    """A held spec is not tried again until it or the retry annotation changes; a new
    rollback-to annotation naming a good recorded revision holds the spec and serves that."""
    hold = Hold.from_status(sit.status.get("hold"))
    if hold is not None and hold.releases(sit.key, sit.retry):
        hold = None
        draft.events.append(Event("Normal", Reason.RETRYING, "the spec or the rwadurian.io/"
                                  "retry annotation changed: trying again"))
    request = sit.obs.annotations.get(r.ANN_ROLLBACK_TO)
    if not request or request == sit.status.get("rollbackHandled"):
        return hold
    draft.fields["rollbackHandled"] = request
    entry = sit.revision(request)
    if entry is None or not entry.good:
        draft.events.append(Event("Warning", Reason.ROLLBACK_REFUSED,
                                  f"revision {request} is not a good revision in "
                                  "status.history"))
        return hold
    draft.events.append(Event("Normal", Reason.ROLLING_BACK,
                              f"rolling back to revision {entry.revision} ({entry.image}) "
                              f"as requested by {r.ANN_ROLLBACK_TO}"))
    return Hold(key=sit.key, retry=sit.retry, reason=HoldReason.MANUAL_ROLLBACK,
                to=entry.revision, message=f"rollback to revision {entry.revision} requested")


@dataclass(frozen=True)
class Aim:
    """What the pods should run this round."""

    target: r.Target | None          # None: held, with no recorded revision to serve
    target_key: str | None
    rollback_to: Revision | None     # the recorded revision a hold serves
    rollback_needed: bool            # held, and the live Deployment does not run it yet
    live_image: str | None           # what the live Deployment's pods run


def target_revision(sit: Situation, hold: Hold | None) -> Aim:
    """The spec's target, or while held the recorded revision the hold points to (with the
    spec's Secrets)."""
    rollback_to = sit.revision(hold.to) if hold is not None and hold.to else None
    target: r.Target | None = sit.wanted
    if hold is not None:
        target = None
        if rollback_to is not None:
            config = rollback_to.config
            target = r.Target(image=str(rollback_to.image),
                              config=tuple(sorted(config.items())) if config is not None
                              else sit.wanted.config,
                              secrets_hash=sit.wanted.secrets_hash)
    live_image, live_config = live_target(sit.dep)
    return Aim(
        target=target,
        target_key=revision_key(target.image, target.config_hash, target.secrets_hash)
        if target else None,
        rollback_to=rollback_to,
        rollback_needed=target is not None and hold is not None and (
            sit.dep is None or live_image != target.image
            or live_config != target.config_hash),
        live_image=live_image)
