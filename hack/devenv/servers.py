"""PostgreSQL 15 and Redis 7 (Debian packages) and an Apache Kafka broker in KRaft mode
(jars from Maven Central), each on a free port of the node's IP (10.244.0.1, inside the
environment's network namespace, reachable from pods) and of its loopback, with its data and
log in the run folder."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from devenv import build, netns, paths, procs
from devenv.state import State

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"


def _as_postgres(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; drop to the `postgres` user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_USER, "--", *argv]
    return argv


def init_cluster(base: Path) -> Path:
    """`base/data`, a PostgreSQL cluster owned by the postgres user (made once)."""
    data = base / "data"
    if os.geteuid() == 0:
        procs.run(["install", "-d", "-o", PG_USER, "-g", PG_USER, str(base)])
    else:
        base.mkdir(parents=True, exist_ok=True)
    if not (data / "PG_VERSION").exists():
        procs.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                                "-A", "trust", "-E", "UTF8", "--no-locale"]))
    return data


def start_cluster(base: Path, port: int, listen: str, log: Path) -> int:
    """Start the cluster in `base` (socket there too) on `port`; returns the postmaster's
    pid once it accepts connections. Tests start private clusters with this."""
    data = base / "data"
    opts = (f"-p {port} -k {base} -c listen_addresses={listen} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
    if os.geteuid() == 0:
        procs.run(["install", "-o", PG_USER, "-g", PG_USER, "/dev/null", str(log)])
    procs.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w",
                            "-t", "60", "-o", opts, "start"]))
    return int((data / "postmaster.pid").read_text().split()[0])


def stop_cluster(base: Path, mode: str = "fast") -> None:
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(base / "data"), "-m", mode,
                                 "-w", "stop"]), capture_output=True, check=False)


def start_postgres(state: State) -> None:
    if procs.alive(state.pids.get("postgres")):
        return
    base = paths.RUN / "postgres"
    data = init_cluster(base)
    port = procs.sticky_port(state.ports, "postgres")
    hba = data / "pg_hba.conf"
    pods = f"host all all {netns.POD_CIDR} trust"
    if pods not in hba.read_text():   # pods of the real node connect from the pod network
        with hba.open("a") as f:
            f.write(f"{pods}\n")
    pid = start_cluster(base, port, f"127.0.0.1,{netns.NODE_IP}", paths.RUN / "postgres.log")
    state.pids["postgres"] = pid
    state.ports["postgres"] = port
    # The node's IP: the same URL works for the tests and for pods.
    state.database_url = f"postgresql://postgres@{netns.NODE_IP}:{port}/postgres"
    state.save()


def stop_postgres(state: State) -> None:
    if procs.alive(state.pids.get("postgres")):
        stop_cluster(paths.RUN / "postgres")
        procs.stop(state.pids.get("postgres"))
    state.pids.pop("postgres", None)


def redis_argv(port: int, binds: list[str], folder: Path) -> list[str]:
    """A redis-server without persistence (tests start private ones with this)."""
    return [shutil.which("redis-server") or "redis-server", "--port", str(port),
            "--bind", *binds,
            # no password on a dev server reachable from pods only
            "--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", str(folder)]


def start_redis(state: State) -> None:
    if procs.alive(state.pids.get("redis")):
        return
    port = procs.sticky_port(state.ports, "redis")
    state.ports["redis"] = port
    procs.start(state, "redis", redis_argv(port, ["127.0.0.1", netns.NODE_IP], paths.RUN),
                paths.RUN, ready=lambda: procs.port_open(port))
    state.redis_url = f"redis://{netns.NODE_IP}:{port}/0"
    state.save()


def stop_redis(state: State) -> None:
    procs.stop(state.pids.pop("redis", None))


KAFKA_LOG4J = """\
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
"""


# Pods reach the environment's broker as the seed names it, through a Service of that name.
KAFKA_POD_LISTENER = "kafka-0.kafka.svc.cluster.local:9092"
KAFKA_POD_PORT = 9092


def _kafka_properties(port: int, controller_port: int, data: Path, pods: bool = False) -> str:
    """One KRaft node. With `pods` (the environment's broker) it listens on the node's IP,
    where tests and pods both reach it, plus a listener that advertises the seed's cluster
    DNS name (clients get back the address of the listener they connected to); private
    brokers of tests stay on loopback."""
    host = netns.NODE_IP if pods else "127.0.0.1"
    listeners = [f"PLAINTEXT://{host}:{port}", f"CONTROLLER://127.0.0.1:{controller_port}"]
    advertised = [f"PLAINTEXT://{host}:{port}"]
    protocols = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    if pods:
        listeners.append(f"POD://{netns.NODE_IP}:{KAFKA_POD_PORT}")
        advertised.append(f"POD://{KAFKA_POD_LISTENER}")
        protocols += ",POD:PLAINTEXT"
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
        f"listeners={','.join(listeners)}",
        f"advertised.listeners={','.join(advertised)}",
        "inter.broker.listener.name=PLAINTEXT",
        "controller.listener.names=CONTROLLER",
        f"listener.security.protocol.map={protocols}",
        f"log.dirs={data}",
        "num.partitions=1",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=4",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=true",
        "log.flush.interval.messages=100000",
        "",
    ])


def _java_cmd(libs: Path, log4j: Path) -> list[str]:
    return ["java", "-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            f"-Dlog4j.configuration=file:{log4j}", "-cp", f"{libs}/*"]


def start_kafka(state: State) -> None:
    """Start (or restart on the same ports) the environment's single-node KRaft broker."""
    if procs.alive(state.pids.get("kafka")):
        return
    port = procs.sticky_port(state.ports, "kafka")
    controller = procs.sticky_port(state.ports, "kafka-controller")
    pid = start_broker(paths.RUN / "kafka", "kafka", port, controller, pods=True)
    state.pids["kafka"] = pid
    state.ports["kafka"] = port
    state.ports["kafka-controller"] = controller
    state.kafka_brokers = f"{netns.NODE_IP}:{port}"
    state.save()


def start_broker(base: Path, name: str, port: int, controller: int, pods: bool = False) -> int:
    """Format (once) and start a KRaft broker with its data in `base`; returns when the
    broker answers metadata requests. Tests use this for private brokers they may stop."""
    libs = build.kafka_libs()
    base.mkdir(parents=True, exist_ok=True)
    props = base / "server.properties"
    props.write_text(_kafka_properties(port, controller, base / "data", pods))
    log4j = base / "log4j.properties"
    log4j.write_text(KAFKA_LOG4J)
    java = _java_cmd(libs, log4j)
    if not (base / "data" / "meta.properties").exists():
        cluster_id = new_cluster_id()
        procs.run([*java, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                   "-c", str(props), "--ignore-formatted"])
    pid = procs.spawn(name, [*java, "kafka.Kafka", str(props)], base.parent)
    log = base.parent / f"{name}.log"
    host = netns.NODE_IP if pods else procs.LOOPBACK
    procs.wait_until(f"{name} port", lambda: procs.port_open(port, host), 90, pid, log)
    procs.wait_until(name, lambda: kafka_ready(f"{host}:{port}"), 60, pid, log)
    return pid


def new_cluster_id() -> str:
    """KRaft wants a 22-character URL-safe base64 UUID, not a dashed one; and not one that
    starts with `-`, which the storage tool would read as an option (1 in 64 did)."""
    for _ in range(100):
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
    raise RuntimeError("no usable cluster id in 100 tries")


def kafka_ready(brokers: str) -> bool:
    """Ready means the broker answers metadata requests, not merely an open port."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": brokers, "socket.timeout.ms": 1000,
                         "log_level": 0})
    meta = admin.list_topics(timeout=2)
    return bool(meta.brokers)


def stop_kafka(state: State) -> None:
    procs.stop(state.pids.pop("kafka", None), timeout=20)
