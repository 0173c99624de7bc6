"""Typed settings parsed from the environment (the seed's variable names).

`load_config(environ)` is pure: it takes a mapping and returns a frozen `Config` or raises
`ConfigError` naming the one variable that is missing or malformed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from authz_service.domain import RoleType

DEFAULT_THRESHOLDS: Mapping[RoleType, int] = {
    RoleType.COMMUNITY: 10,
    RoleType.AUTH_CITY_COMPANY: 100,
    RoleType.CITY_COMPANY: 100,
    RoleType.AUTH_PROVINCE_COMPANY: 500,
    RoleType.PROVINCE_COMPANY: 500,
}

LOG_LEVELS = {"debug": "DEBUG", "info": "INFO", "warn": "WARNING", "warning": "WARNING",
              "error": "ERROR"}

# Prisma-style query parameters that libpq does not understand: honoured or dropped here.
_PRISMA_ONLY = {"connection_limit", "pool_timeout", "schema", "pgbouncer",
                "statement_cache_size", "socket_timeout", "sslaccept"}


class ConfigError(Exception):
    """A variable is missing or malformed; the message names it."""

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"configuration error: {variable} {reason}")
        self.variable = variable


@dataclass(frozen=True)
class DatabaseConfig:
    conninfo: str = field(repr=False)  # libpq URL without Prisma-only parameters
    pool_max: int = 10
    pool_timeout: float = 2.0  # seconds to wait for a pooled connection (Prisma: pool_timeout)
    connect_timeout: int = 2  # whole seconds (libpq); a URL's own connect_timeout wins
    statement_timeout_ms: int = 3000  # the server cancels longer statements and lock waits

    @property
    def redacted(self) -> str:
        return redact_url(self.conninfo)


@dataclass(frozen=True)
class RedisConfig:
    host: str = "localhost"
    port: int = 6379
    password: str | None = field(default=None, repr=False)
    db: int = 0
    timeout: float = 0.5  # seconds per connect and per reply; a cache must fail fast


@dataclass(frozen=True)
class KafkaConfig:
    brokers: tuple[str, ...]
    client_id: str = "authorization-service"
    consumer_group: str = "authorization-service-group"
    events_topic: str = "authorization-events"
    identity_topic: str = "identity-events"
    delivery_timeout_ms: int = 10_000


@dataclass(frozen=True)
class JwtConfig:
    secret: str = field(repr=False)
    previous_secret: str | None = field(default=None, repr=False)
    expires_in: int = 3600  # seconds
    algorithm: str = "HS256"


@dataclass(frozen=True)
class ServicesConfig:
    identity_url: str = "http://identity-service:3001"
    referral_url: str = "http://referral-service:3003"
    statistics_url: str = "http://statistics-service:3004"
    timeout: float = 2.0
    attempts: int = 3


@dataclass(frozen=True)
class Config:
    database: DatabaseConfig
    redis: RedisConfig
    kafka: KafkaConfig
    jwt: JwtConfig
    services: ServicesConfig = ServicesConfig()
    node_env: str = "production"
    port: int = 3002
    log_level: str = "INFO"
    body_limit: int = 64 * 1024
    cache_ttl: int = 60
    thresholds: Mapping[RoleType, int] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    relay_enabled: bool = True
    relay_interval: float = 0.5
    consumer_enabled: bool = True
    shutdown_timeout: float = 10.0
    # Every request answers within this many seconds: past it, 503 dependency_unavailable.
    request_timeout: float = 4.0
    # After SIGTERM: seconds of serving on while readiness says 503 (load balancers and
    # Kubernetes endpoints stop sending), then stop accepting and finish what is in flight.
    shutdown_grace: float = 0.0
    workers: int | None = None  # WEB_CONCURRENCY; None: the CPUs the cgroup quota allows


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _get(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = env.get(name, "").strip()
    if value:
        return value
    if default is None:
        raise ConfigError(name, "is required but not set")
    return default


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = _get(env, name, str(default))
    if not re.fullmatch(r"\d+", raw):
        raise ConfigError(name, f"must be an integer, got {raw!r}")
    value = int(raw)
    if not lo <= value <= hi:
        raise ConfigError(name, f"must be between {lo} and {hi}, got {value}")
    return value


def _http_url(env: Mapping[str, str], name: str, default: str) -> str:
    raw = _get(env, name, default).rstrip("/")
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(name, f"must be an http(s) URL, got {raw!r}")
    return raw


_UNITS = {"ms": 0.001, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
          "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
          "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
          "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800,
          "weeks": 604800}


def parse_duration(raw: str) -> int:
    """`1h`, `30m`, `2 days`, `3600` (bare numbers are seconds) -> whole seconds > 0."""
    match = re.fullmatch(r"(\d+)\s*([a-zA-Z]*)", raw.strip())
    unit = (match.group(2).lower() or "s") if match else ""
    seconds = int(int(match.group(1)) * _UNITS[unit]) if match and unit in _UNITS else 0
    if seconds <= 0:
        raise ValueError(f"not a positive duration: {raw!r}")
    return seconds


def parse_database_url(raw: str) -> DatabaseConfig:
    """Split Prisma-style `?connection_limit=20&pool_timeout=30` from the libpq URL."""
    parts = urlsplit(raw)
    if parts.scheme not in ("postgresql", "postgres") or not parts.netloc:
        raise ConfigError("DATABASE_URL", "must be a postgresql:// URL")
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in query if k not in _PRISMA_ONLY]
    given = dict(query)
    pool_max, pool_timeout = 10, DatabaseConfig.pool_timeout
    if "connection_limit" in given:
        value = given["connection_limit"]
        if not value.isdigit() or not 1 <= int(value) <= 1000:
            raise ConfigError("DATABASE_URL", "connection_limit must be an integer 1-1000")
        pool_max = int(value)
    if "pool_timeout" in given:
        value = given["pool_timeout"]
        if not value.isdigit():
            raise ConfigError("DATABASE_URL", "pool_timeout must be whole seconds")
        pool_timeout = float(value) or 3600.0  # Prisma: 0 means no timeout
    if given.get("schema"):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", given["schema"]):
            raise ConfigError("DATABASE_URL", "schema must be a plain identifier")
        kept.append(("options", f"-csearch_path={given['schema']}"))
    conninfo = urlunsplit(parts._replace(query=urlencode(kept)))
    return DatabaseConfig(conninfo=conninfo, pool_max=pool_max, pool_timeout=pool_timeout)


def _seconds(env: Mapping[str, str], name: str, default_ms: int, lo: int, hi: int) -> float:
    """A `*_MS` variable (whole milliseconds) as seconds."""
    return _int(env, name, default_ms, lo, hi) / 1000


def _timeouts(env: Mapping[str, str], database: DatabaseConfig) -> tuple[DatabaseConfig, float]:
    """The database's bounds and the request deadline, which must leave room for them:
    a statement that runs into its timeout still answers (503) before the deadline."""
    request = _seconds(env, "REQUEST_TIMEOUT_MS", 4000, 100, 600_000)
    statement = _int(env, "DATABASE_STATEMENT_TIMEOUT_MS", 3000, 1, 600_000)
    if statement / 1000 >= request:
        raise ConfigError("DATABASE_STATEMENT_TIMEOUT_MS",
                          f"must be below REQUEST_TIMEOUT_MS ({int(request * 1000)})")
    return replace(
        database, statement_timeout_ms=statement,
        connect_timeout=_int(env, "DATABASE_CONNECT_TIMEOUT", 2, 1, 600),
    ), request


def parse_thresholds(raw: str) -> dict[RoleType, int]:
    """`COMMUNITY=10,CITY_COMPANY=100` overrides the defaults role by role."""
    result = dict(DEFAULT_THRESHOLDS)
    for item in filter(None, (p.strip() for p in raw.split(","))):
        name, sep, value = item.partition("=")
        if not sep or name.strip() not in RoleType.__members__ or not value.strip().isdigit():
            raise ConfigError("ASSESSMENT_THRESHOLDS", f"has a malformed entry {item!r}")
        result[RoleType(name.strip())] = int(value)
    return result


def load_config(env: Mapping[str, str]) -> Config:
    database = parse_database_url(_get(env, "DATABASE_URL"))
    brokers = tuple(b.strip() for b in _get(env, "KAFKA_BROKERS").split(",") if b.strip())
    for broker in brokers:
        if not re.fullmatch(r"[A-Za-z0-9._\-\[\]:]+:\d{1,5}", broker):
            raise ConfigError("KAFKA_BROKERS", f"has a malformed broker {broker!r} (host:port)")
    if not brokers:
        raise ConfigError("KAFKA_BROKERS", "is required but not set")
    try:
        expires_in = parse_duration(_get(env, "JWT_EXPIRES_IN", "1h"))
    except ValueError:
        raise ConfigError("JWT_EXPIRES_IN", "must be a duration such as 1h, 30m or 3600"
                          ) from None
    log_level = _get(env, "LOG_LEVEL", "info").lower()
    if log_level not in LOG_LEVELS:
        raise ConfigError("LOG_LEVEL",
                          f"must be one of debug, info, warn, error; got {log_level!r}")
    database, request_timeout = _timeouts(env, database)
    return Config(
        node_env=_get(env, "NODE_ENV", "production"),
        port=_int(env, "PORT", 3002, 1, 65535),
        database=database,
        request_timeout=request_timeout,
        shutdown_grace=_seconds(env, "SHUTDOWN_GRACE_MS", 0, 0, 600_000),
        redis=RedisConfig(
            host=_get(env, "REDIS_HOST", "localhost"),
            port=_int(env, "REDIS_PORT", 6379, 1, 65535),
            password=env.get("REDIS_PASSWORD") or None,
            timeout=_seconds(env, "REDIS_TIMEOUT_MS", 500, 10, 60_000),
        ),
        kafka=KafkaConfig(
            brokers=brokers,
            client_id=_get(env, "KAFKA_CLIENT_ID", "authorization-service"),
            consumer_group=_get(env, "KAFKA_CONSUMER_GROUP", "authorization-service-group"),
            events_topic=_get(env, "KAFKA_EVENTS_TOPIC", "authorization-events"),
            identity_topic=_get(env, "KAFKA_IDENTITY_TOPIC", "identity-events"),
        ),
        jwt=JwtConfig(
            secret=_get(env, "JWT_SECRET"),
            previous_secret=env.get("JWT_SECRET_PREVIOUS") or None,
            expires_in=expires_in,
        ),
        services=ServicesConfig(
            identity_url=_http_url(env, "IDENTITY_SERVICE_URL", "http://identity-service:3001"),
            referral_url=_http_url(env, "REFERRAL_SERVICE_URL", "http://referral-service:3003"),
            statistics_url=_http_url(
                env, "STATISTICS_SERVICE_URL", "http://statistics-service:3004"
            ),
        ),
        log_level=LOG_LEVELS[log_level],
        body_limit=_int(env, "HTTP_BODY_LIMIT", 64 * 1024, 1024, 64 * 1024 * 1024),
        thresholds=parse_thresholds(env.get("ASSESSMENT_THRESHOLDS", "")),
        workers=_int(env, "WEB_CONCURRENCY", 1, 1, 256) if env.get("WEB_CONCURRENCY",
                                                                   "").strip() else None,
    )
