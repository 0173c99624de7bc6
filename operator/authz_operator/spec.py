"""The AuthorizationService spec, parsed into frozen typed objects. Pure: no I/O.

The API server fills defaults from the CRD schema (`crds/`); the same seed values are repeated
here so a spec parsed outside the cluster (unit tests, `kubectl authz` on a file) means the
same thing. `tests/unit/operator/test_crd.py` keeps both in step.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
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


# Pod placement, as any chart has it: the pod spec's own nodeSelector, tolerations and affinity.
TOLERATION_OPERATORS = ("Equal", "Exists")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
PLACEMENT_FIELDS = ("nodeSelector", "tolerations", "affinity")
# A label key ([prefix/]name) and value, as the API server checks them.
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?" + _LABEL_NAME + "$")
LABEL_VALUE_PATTERN = r"^(" + _LABEL_NAME + ")?$"
_LABEL_VALUE_RE = re.compile(LABEL_VALUE_PATTERN)


@dataclass(frozen=True)
class Toleration:
    """One toleration of a pod (core/v1 Toleration); an empty key with Exists tolerates
    every taint."""

    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""                      # "" matches every effect
    toleration_seconds: int | None = None  # NoExecute only

    def to_pod(self) -> dict[str, Any]:
        out: dict[str, Any] = {"operator": self.operator}
        if self.key:
            out["key"] = self.key
        if self.value:
            out["value"] = self.value
        if self.effect:
            out["effect"] = self.effect
        if self.toleration_seconds is not None:
            out["tolerationSeconds"] = self.toleration_seconds
        return out


@dataclass(frozen=True)
class Placement:
    """Where a pod may run. `affinity` is a core/v1 Affinity (node affinity, pod affinity
    and anti-affinity), checked field by field when parsed and kept as canonical JSON so
    the spec stays frozen; "" means none."""

    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    affinity: str = ""

    def pod_fields(self) -> dict[str, Any]:
        """The pod spec's fields for this placement: only those that are set, so a
        resource without placement renders the same pods as before these fields existed."""
        out: dict[str, Any] = {}
        if self.node_selector:
            out["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            out["tolerations"] = [t.to_pod() for t in self.tolerations]
        if self.affinity:
            out["affinity"] = json.loads(self.affinity)
        return out


@dataclass(frozen=True)
class Migrations:
    enabled: bool = True
    backoff_limit: int = 3
    active_deadline_seconds: int = 600
    # The Job's pod: the service pods' placement, field by field, unless migrations.<field>
    # is given (parse_spec resolves it).
    placement: Placement = Placement()


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
    placement: Placement = Placement()   # the service pods'

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


def _label_map(raw: Any, path: str) -> tuple[tuple[str, str], ...]:
    """A map of label keys to label values (a nodeSelector, a matchLabels), sorted."""
    if not isinstance(raw, Mapping):
        raise SpecError(path, "must be a map of label keys to label values")
    for key, value in raw.items():
        if not isinstance(key, str) or not _LABEL_KEY_RE.match(key):
            raise SpecError(f"{path}[{key}]", "is not a label key ([prefix/]name)")
        if not isinstance(value, str) or not _LABEL_VALUE_RE.match(value):
            raise SpecError(f"{path}[{key}]", f"{value!r} is not a label value")
    return tuple(sorted(raw.items()))


def _known(raw: Mapping[str, Any], path: str, fields: Sequence[str]) -> None:
    for key in raw:
        if key not in fields:
            raise SpecError(f"{path}.{key}", f"is not a field here (one of {', '.join(fields)})")


def _toleration(raw: Any, path: str) -> Toleration:
    """One toleration, with the API server's rules: an empty key needs Exists, Exists takes
    no value, tolerationSeconds only with NoExecute."""
    if not isinstance(raw, Mapping):
        raise SpecError(path, "must be an object (key, operator, value, effect)")
    _known(raw, path, ("key", "operator", "value", "effect", "tolerationSeconds"))
    key, operator = raw.get("key") or "", raw.get("operator") or "Equal"
    value, effect = raw.get("value") or "", raw.get("effect") or ""
    seconds = raw.get("tolerationSeconds")
    if not isinstance(key, str) or (key and not _LABEL_KEY_RE.match(key)):
        raise SpecError(f"{path}.key", f"{key!r} is not a taint key ([prefix/]name)")
    if operator not in TOLERATION_OPERATORS:
        raise SpecError(f"{path}.operator", "must be Equal or Exists")
    if not key and operator != "Exists":
        raise SpecError(f"{path}.operator", "must be Exists when key is empty (every taint)")
    if not isinstance(value, str) or not _LABEL_VALUE_RE.match(value):
        raise SpecError(f"{path}.value", f"{value!r} is not a taint value")
    if operator == "Exists" and value:
        raise SpecError(f"{path}.value", "must be empty when operator is Exists")
    if effect and effect not in TAINT_EFFECTS:
        raise SpecError(f"{path}.effect", f"must be one of {', '.join(TAINT_EFFECTS)}")
    if seconds is not None:
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            raise SpecError(f"{path}.tolerationSeconds", "must be an integer")
        if effect != "NoExecute":
            raise SpecError(f"{path}.tolerationSeconds", "is allowed only with effect NoExecute")
    return Toleration(key, operator, value, effect, seconds)


# The shape of a core/v1 Affinity, so a mistake is named (InvalidSpec) before any pod is
# built: ("obj", required, fields), ("list", item, min items), ("str",) non-empty,
# ("text",) any string, ("weight",) 1..100, ("labels",) a label map, ("req", operators).
Shape = tuple[Any, ...]
_REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
_PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"
_STRINGS: Shape = ("list", ("str",), 0)
_NODE_TERM: Shape = ("obj", (), {
    "matchExpressions": ("list", ("req", ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")),
                         0),
    "matchFields": ("list", ("req", ("In", "NotIn")), 0)})
_LABEL_SELECTOR: Shape = ("obj", (), {
    "matchLabels": ("labels",),
    "matchExpressions": ("list", ("req", ("In", "NotIn", "Exists", "DoesNotExist")), 0)})
_POD_TERM: Shape = ("obj", ("topologyKey",), {
    "labelSelector": _LABEL_SELECTOR, "namespaceSelector": _LABEL_SELECTOR,
    "namespaces": _STRINGS, "topologyKey": ("str",), "matchLabelKeys": _STRINGS,
    "mismatchLabelKeys": _STRINGS})
_POD_AFFINITY: Shape = ("obj", (), {
    _REQUIRED: ("list", _POD_TERM, 0),
    _PREFERRED: ("list", ("obj", ("weight", "podAffinityTerm"),
                          {"weight": ("weight",), "podAffinityTerm": _POD_TERM}), 0)})
AFFINITY_SHAPE: Shape = ("obj", (), {
    "nodeAffinity": ("obj", (), {
        _REQUIRED: ("obj", ("nodeSelectorTerms",), {"nodeSelectorTerms": ("list", _NODE_TERM, 1)}),
        _PREFERRED: ("list", ("obj", ("weight", "preference"),
                              {"weight": ("weight",), "preference": _NODE_TERM}), 0)}),
    "podAffinity": _POD_AFFINITY,
    "podAntiAffinity": _POD_AFFINITY})
_REQUIREMENT: Shape = ("obj", ("key", "operator"),
                       {"key": ("str",), "operator": ("str",), "values": ("list", ("text",), 0)})


def _shaped(value: Any, shape: Shape, path: str) -> Any:
    """`value` checked against `shape`; a copy without null fields."""
    kind = shape[0]
    if kind == "obj":
        required, fields = shape[1], shape[2]
        if not isinstance(value, Mapping):
            raise SpecError(path, "must be an object")
        _known(value, path, tuple(fields))
        for key in required:
            if value.get(key) is None:
                raise SpecError(f"{path}.{key}", "is required")
        return {k: _shaped(v, fields[k], f"{path}.{k}") for k, v in value.items()
                if v is not None}
    if kind == "list":
        if not isinstance(value, list) or len(value) < shape[2]:
            raise SpecError(path, f"must be a list of at least {shape[2]}" if shape[2]
                            else "must be a list")
        return [_shaped(v, shape[1], f"{path}[{i}]") for i, v in enumerate(value)]
    if kind in ("str", "text"):
        if not isinstance(value, str) or (kind == "str" and not value):
            raise SpecError(path, "must be a non-empty string" if kind == "str"
                            else "must be a string")
        return value
    if kind == "weight":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
            raise SpecError(path, "must be an integer between 1 and 100")
        return value
    if kind == "labels":
        return dict(_label_map(value, path))
    return _requirement(value, shape[1], path)


def _requirement(value: Any, operators: tuple[str, ...], path: str) -> Any:
    """A selector requirement: a key, an operator, and the values that operator takes."""
    req = _shaped(value, _REQUIREMENT, path)
    op, values = req["operator"], req.get("values") or []
    if op not in operators:
        raise SpecError(f"{path}.operator", f"must be one of {', '.join(operators)}")
    if op in ("In", "NotIn") and not values:
        raise SpecError(f"{path}.values", f"must not be empty with operator {op}")
    if op in ("Exists", "DoesNotExist") and values:
        raise SpecError(f"{path}.values", f"must be empty with operator {op}")
    if op in ("Gt", "Lt") and (len(values) != 1 or not re.fullmatch(r"-?[0-9]+", values[0])):
        raise SpecError(f"{path}.values", f"must be one integer with operator {op}")
    return req


def _placement(raw: Mapping[str, Any], path: str, inherit: Placement) -> Placement:
    """nodeSelector, tolerations and affinity of `raw`; a field absent keeps `inherit`'s (a
    field given, even empty, replaces it)."""
    node_selector, tolerations, affinity = (inherit.node_selector, inherit.tolerations,
                                            inherit.affinity)
    if raw.get("nodeSelector") is not None:
        node_selector = _label_map(raw["nodeSelector"], f"{path}nodeSelector")
    if raw.get("tolerations") is not None:
        items = raw["tolerations"]
        if not isinstance(items, list):
            raise SpecError(f"{path}tolerations", "must be a list of tolerations")
        tolerations = tuple(_toleration(t, f"{path}tolerations[{i}]")
                            for i, t in enumerate(items))
    if raw.get("affinity") is not None:
        checked = _shaped(raw["affinity"], AFFINITY_SHAPE, f"{path}affinity")
        affinity = json.dumps(checked, sort_keys=True, separators=(",", ":")) if checked else ""
    return Placement(node_selector, tolerations, affinity)


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

    placement = _placement(raw, "", Placement())

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
            placement=_placement(mg, "migrations.", placement),
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
        placement=placement,
    )
