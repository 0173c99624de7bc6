"""Choosing the environment's ports."""

from __future__ import annotations

import random
import socket
from pathlib import Path

from devenv import procs


def ephemeral_low() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_a_sticky_port_is_chosen_below_the_ephemeral_range() -> None:
    """Clients never get it for their side of a connection, so it is free to listen on
    again whatever load ran before."""
    ports: dict[str, int] = {}
    port = procs.sticky_port(ports, "etcd")
    assert procs.SERVER_PORTS_FROM <= port < ephemeral_low()
    assert ports == {"etcd": port}


def test_a_sticky_port_is_kept_while_nothing_listens_there() -> None:
    ports: dict[str, int] = {}
    first = procs.sticky_port(ports, "redis")
    assert procs.sticky_port(ports, "redis") == first


def test_a_sticky_port_taken_by_someone_else_is_replaced() -> None:
    with socket.socket() as other:
        other.bind((procs.LOOPBACK, 0))
        other.listen()
        taken = other.getsockname()[1]
        ports = {"postgres": taken}
        assert procs.sticky_port(ports, "postgres") != taken


def test_a_server_port_skips_ports_in_use() -> None:
    """The same random sequence twice: the first pick, once bound by someone, is skipped."""
    first = procs.server_port(random.Random(7))
    with socket.socket() as other:
        other.bind((procs.LOOPBACK, first))
        assert procs.server_port(random.Random(7)) != first
