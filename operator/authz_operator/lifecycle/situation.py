"""One reconcile's starting point (`Situation`, frozen) and what it writes (`Draft`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from authz_operator import resources as r
from authz_operator.lifecycle.model import Obj, Observed
from authz_operator.lifecycle.observe import missing_secret_keys
from authz_operator.lifecycle.state import Database, MigrationRecord, Revision, find_revision
from authz_operator.spec import Spec
from authz_operator.status import Event


def revision_key(image: str, config_hash: str, secrets_hash: str) -> str:
    return r.content_hash([image, config_hash, secrets_hash])


@dataclass(frozen=True)
class Situation:
    """The observation, read into the lifecycle's types."""

    obs: Observed
    spec: Spec
    dep: Obj | None                   # the live Deployment
    missing: tuple[str, ...]          # referenced Secrets or keys that do not exist
    wanted: r.Target                  # what the spec asks for
    key: str                          # its revision key
    retry: str                        # the retry annotation
    history: tuple[Revision, ...]
    database: Database
    migration: MigrationRecord | None
    last_revision: int                # the highest revision number ever handed out

    @classmethod
    def of(cls, obs: Observed, spec: Spec) -> Situation:
        st = obs.status
        versions = {n: v.resource_version for n, v in sorted(obs.secrets.items())
                    if v is not None}
        wanted = r.target_from_spec(spec, versions)
        history = tuple(Revision.from_status(h) for h in st.get("history") or [])
        migration = MigrationRecord.from_status(st.get("migration"))
        last = max([int(st.get("lastRevision") or 0), migration.revision if migration else 0]
                   + [h.revision for h in history])
        return cls(obs=obs, spec=spec, dep=obs.children.get("Deployment"),
                   missing=tuple(missing_secret_keys(spec, obs.secrets)), wanted=wanted,
                   key=revision_key(wanted.image, wanted.config_hash, wanted.secrets_hash),
                   retry=obs.annotations.get(r.ANN_RETRY, ""), history=history,
                   database=Database.from_status(st.get("database")), migration=migration,
                   last_revision=last)

    @property
    def status(self) -> Any:
        return self.obs.status

    def revision(self, number: Any) -> Revision | None:
        return find_revision(self.history, number)


@dataclass
class Draft:
    """What this reconcile adds to the status, and the events its steps post."""

    fields: Obj = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    def numbered(self, situation: Situation, number: int) -> None:
        """Revision `number` was handed out (to a Job or a history entry)."""
        self.fields["lastRevision"] = max(situation.last_revision, number)
