"""The running environment's facts (ports, pids, URLs), saved as JSON in the run folder so
`hack/down`, `hack/test` and the test fixtures find what `hack/up` started."""

from __future__ import annotations

import dataclasses
import json
import shlex
from dataclasses import dataclass, field

from devenv import paths


@dataclass
class State:
    pids: dict[str, int] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    stamps: dict[str, str] = field(default_factory=dict)  # code each process started from
    kubeconfig: str = ""
    kubectl_dir: str = ""
    database_url: str = ""
    redis_url: str = ""
    kafka_brokers: str = ""
    authz_url: str = ""
    jwt_secret: str = ""
    images: dict[str, list[str]] = field(default_factory=dict)  # devenv.imagebuild.to_state

    def save(self) -> None:
        paths.RUN.mkdir(parents=True, exist_ok=True)
        tmp = paths.STATE_FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True))
        tmp.replace(paths.STATE_FILE)

    def env(self) -> dict[str, str]:
        """What `.local/env.sh` exports (only the values known so far)."""
        values = {
            "KUBECONFIG": self.kubeconfig,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "KAFKA_BROKERS": self.kafka_brokers,
            "AUTHZ_URL": self.authz_url,
            "JWT_SECRET": self.jwt_secret,
        }
        return {k: v for k, v in values.items() if v}

    def write_env_sh(self) -> None:
        lines = ["# Written by hack/up; `source .local/env.sh` to talk to the local environment."]
        if self.kubectl_dir:
            lines.append(f'export PATH={shlex.quote(self.kubectl_dir)}:"$PATH"')
        lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(self.env().items())]
        paths.LOCAL.mkdir(parents=True, exist_ok=True)
        paths.ENV_SH.write_text("\n".join(lines) + "\n")


def load() -> State:
    """The saved state, or an empty one when nothing was started."""
    if not paths.STATE_FILE.exists():
        return State()
    raw = json.loads(paths.STATE_FILE.read_text())
    known = {f.name for f in dataclasses.fields(State)}
    return State(**{k: v for k, v in raw.items() if k in known})
