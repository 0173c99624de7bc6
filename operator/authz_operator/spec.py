"""The AuthorizationService spec, parsed into frozen typed objects. Pure: no I/O.

The API server fills defaults from the CRD schema (`crds/`); the same seed values are repeated
here so a spec parsed outside the cluster (unit tests, `kubectl authz` on a file) means the
same thing. `tests/unit/operator/test_crd.py` keeps both in step.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GROUP = "rwadurian.io"
VERSION = "v1alpha1"
KIND = "AuthorizationService"
PLURAL = "authorizationservices"
API_VERSION = f"{GROUP}/{VERSION}"

# Image references: [registry[:port]/]path[:tag][@sha256:digest]; at least a tag or a digest.
IMAGE_PATTERN = (
    r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)
_IMAGE_RE = re.compile(IMAGE_PATTERN)


class SpecError(ValueError):
    """The spec cannot be turned into children; `field` names the offending path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"spec.{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str


# Where a spec names a Secret key: (object, field). The Secret watch's index reads these from
# the raw spec (a spec that does not parse still has its Secrets watched).
SECRET_REF_FIELDS = (("database", "urlSecretRef"), ("redis", "passwordSecretRef"),
                     ("jwt", "secretRef"), ("jwt", "previousSecretRef"))


def raw_secret_names(raw: Mapping[str, Any]) -> set[str]:
    """The Secret names a raw spec references, without parsing (or validating) the rest."""
    names: set[str] = set()
    for obj, field in SECRET_REF_FIELDS:
        parent = raw.get(obj)
        ref = parent.get(field) if isinstance(parent, Mapping) else None
        if isinstance(ref, Mapping) and isinstance(ref.get("name"), str) and ref["name"]:
            names.add(ref["name"])
    return names


@dataclass(frozen=True)
class Database:
    url_secret_ref: SecretKeyRef


@dataclass(frozen=True)
class Redis:
    host: str
    port: int = 6379
    password_secret_ref: SecretKeyRef | None = None


@dataclass(frozen=True)
class Kafka:
    brokers: tuple[str, ...]
    client_id: str = "authorization-service"
    consumer_group: str = "authorization-service-group"


@dataclass(frozen=True)
class Jwt:
    secret_ref: SecretKeyRef
    expires_in: str = "1h"
    previous_secret_ref: SecretKeyRef | None = None   # still accepted during a rotation


@dataclass(frozen=True)
class Services:
    identity_url: str = "http://identity-service:3001"
    referral_url: str = "http://referral-service:3003"
    statistics_url: str = "http://statistics-service:3004"


@dataclass(frozen=True)
class ResourceList:
    cpu: str
    memory: str


@dataclass(frozen=True)
class Resources:
    requests: ResourceList = ResourceList(cpu="250m", memory="512Mi")
    limits: ResourceList = ResourceList(cpu="1", memory="1Gi")


@dataclass(frozen=True)
class Autoscaling:
    enabled: bool = True
    min_replicas: int = 2
    max_replicas: int = 10
    target_cpu_utilization: int = 70
    target_memory_utilization: int = 80


@dataclass(frozen=True)
class Ingress:
    enabled: bool = True
    class_name: str = "nginx"
    host: str = "api.rwadurian.com"
    path: str = "/authorization"
    annotations: tuple[tuple[str, str], ...] = (
        ("nginx.ingress.kubernetes.io/rewrite-target", "/"),
    )


@dataclass(frozen=True)
class Migrations:
    enabled: bool = True
    backoff_limit: int = 3
    active_deadline_seconds: int = 600


@dataclass(frozen=True)
class Rollout:
    progress_deadline_seconds: int = 600
    auto_rollback: bool = True
    revision_history_limit: int = 10


@dataclass(frozen=True)
class Probe:
    """When the kubelet starts probing a container, how often, and how patient it is."""

    initial_delay_seconds: int
    period_seconds: int
    timeout_seconds: int = 1
    failure_threshold: int = 3


@dataclass(frozen=True)
class Probes:
    readiness: Probe = Probe(initial_delay_seconds=10, period_seconds=5)
    liveness: Probe = Probe(initial_delay_seconds=30, period_seconds=10)


@dataclass(frozen=True)
class Spec:
    image: str
    database: Database
    redis: Redis
    kafka: Kafka
    jwt: Jwt
    replicas: int = 3
    port: int = 3002
    node_env: str = "production"
    log_level: str = "info"
    services: Services = Services()
    resources: Resources = Resources()
    autoscaling: Autoscaling = Autoscaling()
    ingress: Ingress = Ingress()
    image_pull_secrets: tuple[str, ...] = ("registry-credentials",)
    migrations: Migrations = Migrations()
    rollout: Rollout = Rollout()
    probes: Probes = Probes()
    paused: bool = False

    def secret_refs(self) -> tuple[tuple[str, SecretKeyRef], ...]:
        """Every Secret key the pods read, with the environment variable it feeds."""
        refs: list[tuple[str, SecretKeyRef]] = [("DATABASE_URL", self.database.url_secret_ref)]
        if self.redis.password_secret_ref is not None:
            refs.append(("REDIS_PASSWORD", self.redis.password_secret_ref))
        refs.append(("JWT_SECRET", self.jwt.secret_ref))
        if self.jwt.previous_secret_ref is not None:
            refs.append(("JWT_SECRET_PREVIOUS", self.jwt.previous_secret_ref))
        return tuple(refs)

    def secret_names(self) -> tuple[str, ...]:
        """The distinct Secret names referenced, sorted."""
        return tuple(sorted({ref.name for _, ref in self.secret_refs()}))

    @property
    def max_possible_replicas(self) -> int:
        return self.autoscaling.max_replicas if self.autoscaling.enabled else self.replicas


def image_tag(image: str) -> str:
    """The tag of an image reference ('1.4.0'), or a short digest when it has none."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.split(":", 1)[1]
    if digest:
        return digest.replace(":", "-")[:19]
    return "latest"


# ---------------------------------------------------------------------------------------------
# parsing


def _obj(raw: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{path}{key}", "must be an object")
    return value


def _str(raw: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if value is None:
        raise SpecError(f"{path}{key}", "is required")
    if not isinstance(value, str) or not value:
        raise SpecError(f"{path}{key}", "must be a non-empty string")
    return value


def _int(raw: Mapping[str, Any], key: str, path: str, default: int, lo: int, hi: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{path}{key}", "must be an integer")
    if not lo <= value <= hi:
        raise SpecError(f"{path}{key}", f"must be between {lo} and {hi}")
    return value


def _bool(raw: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise SpecError(f"{path}{key}", "must be true or false")
    return value


def _secret_ref(raw: Mapping[str, Any], key: str, path: str, required: bool) -> SecretKeyRef | None:
    value = raw.get(key)
    if value is None:
        if required:
            raise SpecError(f"{path}{key}", "is required (name and key of a Secret)")
        return None
    if not isinstance(value, Mapping):
        raise SpecError(f"{path}{key}", "must be an object with name and key")
    return SecretKeyRef(
        name=_str(value, "name", f"{path}{key}."), key=_str(value, "key", f"{path}{key}.")
    )


def _resource_list(raw: Mapping[str, Any], path: str, default: ResourceList) -> ResourceList:
    return ResourceList(
        cpu=_str(raw, "cpu", path, default.cpu), memory=_str(raw, "memory", path, default.memory)
    )


def _probe(raw: Mapping[str, Any], key: str, default: Probe) -> Probe:
    path = f"probes.{key}."
    pr = _obj(raw, key, "probes.")
    return Probe(
        initial_delay_seconds=_int(pr, "initialDelaySeconds", path,
                                   default.initial_delay_seconds, 0, 3600),
        period_seconds=_int(pr, "periodSeconds", path, default.period_seconds, 1, 3600),
        timeout_seconds=_int(pr, "timeoutSeconds", path, default.timeout_seconds, 1, 3600),
        failure_threshold=_int(pr, "failureThreshold", path, default.failure_threshold, 1, 100),
    )


def parse_spec(raw: Mapping[str, Any]) -> Spec:
    """Parse `spec` of an AuthorizationService; raise SpecError naming the first bad field.

    Longer than our 60-line rule on purpose: it is one flat pass over the resource's fields
    in the CRD's order, each one line, so a field's parsing sits next to its neighbours'."""
    image = _str(raw, "image", "")
    if not _IMAGE_RE.match(image) or ("@" not in image and ":" not in image.rsplit("/", 1)[-1]):
        raise SpecError("image", f"{image!r} is not an image reference with a tag or digest")

    db = _obj(raw, "database", "")
    rd = _obj(raw, "redis", "")
    kf = _obj(raw, "kafka", "")
    jw = _obj(raw, "jwt", "")
    sv = _obj(raw, "services", "")
    rs = _obj(raw, "resources", "")
    au = _obj(raw, "autoscaling", "")
    ig = _obj(raw, "ingress", "")
    mg = _obj(raw, "migrations", "")
    ro = _obj(raw, "rollout", "")
    pb = _obj(raw, "probes", "")

    db_ref = _secret_ref(db, "urlSecretRef", "database.", required=True)
    jwt_ref = _secret_ref(jw, "secretRef", "jwt.", required=True)
    assert db_ref is not None
    assert jwt_ref is not None

    brokers = kf.get("brokers")
    if not isinstance(brokers, list) or not brokers:
        raise SpecError("kafka.brokers", "needs at least one broker (host:port)")
    for i, b in enumerate(brokers):
        if not isinstance(b, str) or not re.fullmatch(r"[A-Za-z0-9.-]+:[0-9]{1,5}", b):
            raise SpecError(f"kafka.brokers[{i}]", f"{b!r} is not host:port")

    autoscaling = Autoscaling(
        enabled=_bool(au, "enabled", "autoscaling.", True),
        min_replicas=_int(au, "minReplicas", "autoscaling.", 2, 1, 1000),
        max_replicas=_int(au, "maxReplicas", "autoscaling.", 10, 1, 1000),
        target_cpu_utilization=_int(au, "targetCPUUtilization", "autoscaling.", 70, 1, 100),
        target_memory_utilization=_int(au, "targetMemoryUtilization", "autoscaling.", 80, 1, 100),
    )
    if autoscaling.min_replicas > autoscaling.max_replicas:
        raise SpecError("autoscaling.minReplicas", "must not be greater than maxReplicas")

    raw_annotations = ig.get("annotations", dict(Ingress.annotations))
    if not isinstance(raw_annotations, Mapping):
        raise SpecError("ingress.annotations", "must be a map of strings")
    ingress = Ingress(
        enabled=_bool(ig, "enabled", "ingress.", True),
        class_name=_str(ig, "className", "ingress.", "nginx"),
        host=str(ig.get("host", "api.rwadurian.com") or ""),
        path=_str(ig, "path", "ingress.", "/authorization"),
        annotations=tuple(sorted((str(k), str(v)) for k, v in raw_annotations.items())),
    )
    if ingress.enabled and not ingress.host:
        raise SpecError("ingress.host", "is required when the ingress is enabled")

    pull = raw.get("imagePullSecrets", ["registry-credentials"])
    if not isinstance(pull, list) or not all(isinstance(p, str) and p for p in pull):
        raise SpecError("imagePullSecrets", "must be a list of Secret names")

    log_level = _str(raw, "logLevel", "", "info")
    if log_level not in ("debug", "info", "warn", "error"):
        raise SpecError("logLevel", "must be one of debug, info, warn, error")

    return Spec(
        image=image,
        replicas=_int(raw, "replicas", "", 3, 0, 1000),
        port=_int(raw, "port", "", 3002, 1, 65535),
        node_env=_str(raw, "nodeEnv", "", "production"),
        log_level=log_level,
        database=Database(url_secret_ref=db_ref),
        redis=Redis(
            host=_str(rd, "host", "redis."),
            port=_int(rd, "port", "redis.", 6379, 1, 65535),
            password_secret_ref=_secret_ref(rd, "passwordSecretRef", "redis.", required=False),
        ),
        kafka=Kafka(
            brokers=tuple(brokers),
            client_id=_str(kf, "clientId", "kafka.", "authorization-service"),
            consumer_group=_str(kf, "consumerGroup", "kafka.", "authorization-service-group"),
        ),
        jwt=Jwt(secret_ref=jwt_ref, expires_in=_str(jw, "expiresIn", "jwt.", "1h"),
                previous_secret_ref=_secret_ref(jw, "previousSecretRef", "jwt.",
                                                required=False)),
        services=Services(
            identity_url=_str(sv, "identityUrl", "services.", Services.identity_url),
            referral_url=_str(sv, "referralUrl", "services.", Services.referral_url),
            statistics_url=_str(sv, "statisticsUrl", "services.", Services.statistics_url),
        ),
        resources=Resources(
            requests=_resource_list(
                _obj(rs, "requests", "resources."), "resources.requests.", Resources.requests
            ),
            limits=_resource_list(
                _obj(rs, "limits", "resources."), "resources.limits.", Resources.limits
            ),
        ),
        autoscaling=autoscaling,
        ingress=ingress,
        image_pull_secrets=tuple(pull),
        migrations=Migrations(
            enabled=_bool(mg, "enabled", "migrations.", True),
            backoff_limit=_int(mg, "backoffLimit", "migrations.", 3, 0, 100),
            active_deadline_seconds=_int(mg, "activeDeadlineSeconds", "migrations.", 600, 1,
                                         86400),
        ),
        rollout=Rollout(
            progress_deadline_seconds=_int(ro, "progressDeadlineSeconds", "rollout.", 600, 1,
                                           86400),
            auto_rollback=_bool(ro, "autoRollback", "rollout.", True),
            revision_history_limit=_int(ro, "revisionHistoryLimit", "rollout.", 10, 1, 100),
        ),
        probes=Probes(readiness=_probe(pb, "readiness", Probes.readiness),
                      liveness=_probe(pb, "liveness", Probes.liveness)),
        paused=_bool(raw, "paused", "", False),
    )
