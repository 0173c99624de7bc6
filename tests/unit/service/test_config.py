from __future__ import annotations

import pytest

from authz_service.config import (
    ConfigError,
    load_config,
    parse_database_url,
    parse_duration,
    parse_thresholds,
)
from authz_service.domain import RoleType

BASE = {
    "DATABASE_URL": "postgresql://user:s3cret@db:5432/authz",
    "KAFKA_BROKERS": "kafka-0:9092, kafka-1:9092",
    "JWT_SECRET": "x" * 32,
}


def test_defaults_are_the_seeds() -> None:
    config = load_config(BASE)
    assert (config.node_env, config.port, config.log_level) == ("production", 3002, "INFO")
    assert (config.redis.host, config.redis.port, config.redis.password) == (
        "localhost", 6379, None)
    assert config.kafka.brokers == ("kafka-0:9092", "kafka-1:9092")
    assert config.kafka.client_id == "authorization-service"
    assert config.kafka.consumer_group == "authorization-service-group"
    assert config.kafka.events_topic == "authorization-events"
    assert config.jwt.expires_in == 3600
    assert config.services.referral_url == "http://referral-service:3003"
    assert config.body_limit == 65536


def test_every_seed_variable_is_read() -> None:
    env = {**BASE, "NODE_ENV": "staging", "PORT": "8080", "REDIS_HOST": "r",
           "REDIS_PORT": "6380", "REDIS_PASSWORD": "pw", "KAFKA_CLIENT_ID": "c",
           "KAFKA_CONSUMER_GROUP": "g", "JWT_EXPIRES_IN": "30m",
           "JWT_SECRET_PREVIOUS": "old", "IDENTITY_SERVICE_URL": "http://i:1/",
           "REFERRAL_SERVICE_URL": "http://r:2", "STATISTICS_SERVICE_URL": "https://s:3",
           "LOG_LEVEL": "warn"}
    config = load_config(env)
    assert (config.node_env, config.port) == ("staging", 8080)
    assert (config.redis.host, config.redis.port, config.redis.password) == ("r", 6380, "pw")
    assert (config.kafka.client_id, config.kafka.consumer_group) == ("c", "g")
    assert (config.jwt.expires_in, config.jwt.previous_secret) == (1800, "old")
    assert config.services.identity_url == "http://i:1"
    assert config.services.statistics_url == "https://s:3"
    assert config.log_level == "WARNING"


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"DATABASE_URL": ""}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://h/db?connection_limit=abc"}, "DATABASE_URL"),
        ({"KAFKA_BROKERS": ""}, "KAFKA_BROKERS"),
        ({"KAFKA_BROKERS": "no-port"}, "KAFKA_BROKERS"),
        ({"JWT_SECRET": "  "}, "JWT_SECRET"),
        ({"PORT": "http"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"REDIS_PORT": "-1"}, "REDIS_PORT"),
        ({"JWT_EXPIRES_IN": "soon"}, "JWT_EXPIRES_IN"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"REFERRAL_SERVICE_URL": "referral:3003"}, "REFERRAL_SERVICE_URL"),
        ({"ASSESSMENT_THRESHOLDS": "MAYOR=3"}, "ASSESSMENT_THRESHOLDS"),
    ],
)
def test_a_bad_variable_is_named(change: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({**BASE, **change})
    assert info.value.variable == variable
    assert variable in str(info.value)
    assert "\n" not in str(info.value)


def test_secrets_never_show_in_repr() -> None:
    config = load_config({**BASE, "REDIS_PASSWORD": "redis-pw", "JWT_SECRET_PREVIOUS": "prev"})
    text = repr(config)
    for secret in ("s3cret", "redis-pw", "prev", "x" * 32):
        assert secret not in text


def test_prisma_pool_parameters_are_honoured_not_passed_to_libpq() -> None:
    db = parse_database_url(
        "postgresql://u:p@h:5432/d?connection_limit=20&pool_timeout=30&sslmode=disable")
    assert (db.pool_max, db.pool_timeout) == (20, 30.0)
    assert db.conninfo == "postgresql://u:p@h:5432/d?sslmode=disable"
    assert db.redacted == "postgresql://u:***@h:5432/d?sslmode=disable"


def test_prisma_schema_becomes_search_path() -> None:
    db = parse_database_url("postgresql://h/d?schema=authz")
    assert db.conninfo == "postgresql://h/d?options=-csearch_path%3Dauthz"


@pytest.mark.parametrize(("raw", "seconds"), [
    ("1h", 3600), ("30m", 1800), ("45s", 45), ("7d", 604800), ("3600", 3600),
    ("2 days", 172800), ("10 hours", 36000),
])
def test_durations(raw: str, seconds: int) -> None:
    assert parse_duration(raw) == seconds


@pytest.mark.parametrize("raw", ["", "h", "1y", "0", "-1h", "1.5h"])
def test_bad_durations(raw: str) -> None:
    with pytest.raises(ValueError, match="not a positive duration"):
        parse_duration(raw)


def test_thresholds_override_per_role() -> None:
    result = parse_thresholds("COMMUNITY=3, PROVINCE_COMPANY=900")
    assert result[RoleType.COMMUNITY] == 3
    assert result[RoleType.PROVINCE_COMPANY] == 900
    assert result[RoleType.CITY_COMPANY] == 100


def test_timeouts_default_to_a_deadline_above_every_dependency_bound() -> None:
    config = load_config(BASE)
    db = config.database
    assert (config.request_timeout, db.statement_timeout_ms, db.pool_timeout,
            db.connect_timeout, config.redis.timeout, config.shutdown_grace) == (
        4.0, 3000, 2.0, 2, 0.5, 0.0)
    assert db.statement_timeout_ms / 1000 < config.request_timeout
    assert db.pool_timeout < config.request_timeout


def test_timeouts_are_read_from_the_environment() -> None:
    config = load_config({**BASE, "REQUEST_TIMEOUT_MS": "5000",
                          "DATABASE_STATEMENT_TIMEOUT_MS": "2500",
                          "DATABASE_CONNECT_TIMEOUT": "3", "REDIS_TIMEOUT_MS": "250",
                          "SHUTDOWN_GRACE_MS": "5000"})
    assert (config.request_timeout, config.database.statement_timeout_ms,
            config.database.connect_timeout, config.redis.timeout,
            config.shutdown_grace) == (5.0, 2500, 3, 0.25, 5.0)


def test_a_statement_timeout_at_or_above_the_deadline_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({**BASE, "REQUEST_TIMEOUT_MS": "3000",
                     "DATABASE_STATEMENT_TIMEOUT_MS": "3000"})
    assert caught.value.variable == "DATABASE_STATEMENT_TIMEOUT_MS"
