"""Shared fixtures: the running local environment (started by `hack/up` or `hack/test`),
and fresh, isolated things per test: a namespace, a database, a Kafka topic, a private
Kafka broker that a test may stop and start."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from devenv import paths, procs, servers
from devenv import state as devstate


@dataclass(frozen=True)
class DevEnv:
    database_url: str
    redis_url: str
    kafka_brokers: str
    kubeconfig: str
    kubectl: str

    @property
    def redis_host(self) -> str:
        return urlsplit(self.redis_url).hostname or "127.0.0.1"

    @property
    def redis_port(self) -> int:
        return urlsplit(self.redis_url).port or 6379


def _unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def devenv() -> DevEnv:
    """The environment `hack/up` / `hack/test` started; fails clearly when it is not up."""
    st = devstate.load()
    missing = [n for n in ("postgres", "redis", "kafka") if not procs.alive(st.pids.get(n))]
    if missing:
        pytest.fail(f"local servers not running ({', '.join(missing)}): run ./hack/test "
                    "(or ./hack/up) first", pytrace=False)
    return DevEnv(
        database_url=st.database_url,
        redis_url=st.redis_url,
        kafka_brokers=st.kafka_brokers,
        kubeconfig=st.kubeconfig,
        kubectl=str(Path(st.kubectl_dir) / "kubectl") if st.kubectl_dir else "",
    )


@pytest.fixture(scope="session")
def cluster(devenv: DevEnv) -> DevEnv:
    """The environment, asserting the local Kubernetes control plane is up too."""
    st = devstate.load()
    missing = [n for n in ("etcd", "kube-apiserver", "kube-controller-manager",
                           "kube-scheduler", "kwok", "containerd", "kubelet", "kube-proxy",
                           "coredns", "metrics-server") if not procs.alive(st.pids.get(n))]
    if missing:
        pytest.fail(f"local cluster not running ({', '.join(missing)}): run ./hack/test "
                    "(or ./hack/up) first", pytrace=False)
    return devenv


@pytest.fixture(scope="module")
def fresh_database(devenv: DevEnv) -> Iterator[str]:
    """A new, empty database for this test module; dropped afterwards."""
    import psycopg

    name = _unique("t_")
    with psycopg.connect(devenv.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlsplit(devenv.database_url)._replace(path=f"/{name}").geturl()
    yield url
    with psycopg.connect(devenv.database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def kafka_topic(devenv: DevEnv) -> Iterator[str]:
    """A new topic (1 partition) for this test; deleted afterwards."""
    from confluent_kafka.admin import AdminClient, NewTopic

    name = _unique("t-")
    admin = AdminClient({"bootstrap.servers": devenv.kafka_brokers})
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(30)
    yield name
    admin.delete_topics([name])[name].result(30)


class PrivateKafka:
    """A broker of the test's own, so stopping it disturbs no other test."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.name = f"kafka-{base.name}"
        self.port = procs.free_port()
        self.controller = procs.free_port()
        self.pid: int | None = None

    @property
    def brokers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.pid = servers.start_broker(self.base, self.name, self.port, self.controller)

    def stop(self) -> None:
        procs.stop(self.pid, timeout=20)
        self.pid = None


@pytest.fixture
def private_kafka(devenv: DevEnv) -> Iterator[PrivateKafka]:
    """A started single-node broker that the test may `.stop()` and `.start()` again."""
    broker = PrivateKafka(paths.RUN / "private" / _unique("k"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def api(cluster: DevEnv) -> Iterator[Any]:
    """The official client's ApiClient on the local cluster, closed after the test."""
    from tests.support.kube import api_client

    c = api_client(cluster.kubeconfig)
    yield c
    c.close()


@pytest.fixture
def namespace(cluster: DevEnv) -> Iterator[str]:
    """A fresh namespace (with its default ServiceAccount) for this test; deleted after."""
    from kubernetes import client, config, watch

    api_client = config.new_client_from_config(config_file=cluster.kubeconfig)
    core = client.CoreV1Api(api_client)
    name = _unique("t-")
    core.create_namespace({"metadata": {"name": name, "labels": {"authz-test": "true"}}})
    # Pods are refused until the ServiceAccount controller made `default`; watch for it.
    w = watch.Watch()
    found = False
    for event in w.stream(core.list_namespaced_service_account, name, timeout_seconds=30):
        if event["object"].metadata.name == "default":
            found = True
            w.stop()
    assert found, f"ServiceAccount default never appeared in namespace {name}"
    yield name
    core.delete_namespace(name)
    api_client.close()


# A database every operator test's resource may share (its schema is migrated once; later
# migration Jobs find nothing to do). Tests of migrations themselves use one of their own.
SHARED_DATABASE = "authz_operator_tests"
SHARED_DATABASE_URL = (
    f"postgresql://postgres@postgres.postgres.svc.cluster.local:5432/{SHARED_DATABASE}")


@pytest.fixture(scope="session")
def shared_database(devenv: DevEnv) -> str:
    """The database the operator tests' Secrets point at by default (kept: it is migrated
    once and shared by the xdist workers, each of which may try to create it)."""
    import psycopg

    with (psycopg.connect(devenv.database_url, autocommit=True) as conn,
          contextlib.suppress(psycopg.errors.DuplicateDatabase)):
        conn.execute(f'CREATE DATABASE "{SHARED_DATABASE}"')
    return SHARED_DATABASE
