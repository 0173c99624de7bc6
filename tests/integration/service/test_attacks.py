"""Attacks on the real service process (loopback port, known secrets configured): forged
and malformed JWTs, every route under every kind of caller, injection strings in every
parameter, oversized bodies and headers, slow clients. Each is refused cleanly (a 4xx, the
JSON error shape where the request reached the app), the database is unchanged, and the
service still answers /health afterwards. Last, the log and every body: no secret."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import jwt
import psycopg
import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from authz_service.app import LISTEN_BACKLOG, create_app
from authz_service.config import Config
from authz_service.openapi import load_document
from devenv import procs

from .conftest import PREVIOUS_SECRET, SECRET, Env, make_token
from .served import DB_PASSWORD, Served, no_secret_left, served

pytestmark = [pytest.mark.servers, pytest.mark.xdist_group("attacks")]

DOCUMENT = load_document()
API = "/api/v1/authorizations"
MISSING = "00000000-0000-4000-8000-000000000000"
TIMEOUT = aiohttp.ClientTimeout(total=10)


@pytest.fixture(scope="module")
def service(devenv: Env, migrated_database: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served(devenv, migrated_database, tmp_path_factory.mktemp("attacks")) as running:
        yield running
    no_secret_left(running)


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def error_code(self) -> str:
        """The code of the one JSON error shape; fails on any other shape."""
        assert self.content_type == "application/json", (self.status, self.body[:200])
        error = self.json()["error"]
        assert isinstance(error["code"], str)
        assert isinstance(error["message"], str)
        return str(error["code"])


class Client:
    """aiohttp against the process; every body is kept for the secrets test."""

    def __init__(self, service: Served, http: aiohttp.ClientSession) -> None:
        self.service = service
        self.http = http

    async def request(self, method: str, path: str, *, token: str | None = None,
                      headers: dict[str, str] | None = None, **kwargs: Any) -> Answer:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        url = self.service.base_url + path
        async with self.http.request(method, url, headers=sent, **kwargs) as resp:
            body = await resp.read()
        self.service.bodies.append(body)
        return Answer(resp.status, resp.content_type, body)

    async def healthy(self) -> None:
        answer = await self.request("GET", "/health")
        assert answer.status == 200, answer.body


@pytest.fixture
async def client(service: Served) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        yield Client(service, http)
        await Client(service, http).healthy()  # after every group: still answering


ADMIN_TOKEN = make_token("attack-admin", ("admin",))


async def create(client: Client, user: str, role: str = "COMMUNITY",
                 region: str = "440106") -> str:
    answer = await client.request("POST", API, token=ADMIN_TOKEN,
                                  json={"userId": user, "roleType": role, "regionCode": region})
    assert answer.status == 201, answer.body
    return str(answer.json()["id"])


# ---- JWTs -------------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _raw(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A JWT assembled by hand (PyJWT refuses to make some of these)."""
    signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = b"" if key is None else hmac.new(key, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{_b64(signature)}"


def _claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "attack-admin", "roles": ["admin"], "exp": int(time.time()) + 600, **extra}


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _tampered() -> str:
    """A real user's token with `roles: [admin]` written into it, old signature kept."""
    header, _, signature = make_token("attack-user").split(".")
    payload = _b64(json.dumps(_claims(sub="attack-user")).encode())
    return f"{header}.{payload}.{signature}"


def _hs_with_public_key() -> str:
    """The classic confusion: HS256 keyed with an RSA public key (a value anyone has)."""
    pem = _rsa().public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return _raw({"alg": "HS256", "typ": "JWT"}, _claims(), pem)


FORGED: dict[str, Callable[[], str]] = {
    "alg none": lambda: _raw({"alg": "none", "typ": "JWT"}, _claims(), None),
    "alg None, signed anyway": lambda: _raw({"alg": "None"}, _claims(), SECRET.encode()),
    "RS256 with the attacker's key": lambda: jwt.encode(_claims(), _rsa(), algorithm="RS256"),
    "HS256 keyed with an RSA public key": _hs_with_public_key,
    "HS512 with the right secret": lambda: jwt.encode(_claims(), SECRET + "x" * 40,
                                                      algorithm="HS512"),
    "wrong key": lambda: make_token("attack-admin", ("admin",), secret="wrong-" * 8),
    "a secret older than the previous one": lambda: make_token(
        "attack-admin", ("admin",), secret="retired-secret-0123456789abcdef0"),
    "expired": lambda: make_token("attack-admin", ("admin",), exp=int(time.time()) - 60),
    "nbf in the future": lambda: make_token("attack-admin", ("admin",),
                                            nbf=int(time.time()) + 600),
    "iat in the future": lambda: make_token("attack-admin", ("admin",),
                                            iat=int(time.time()) + 600),
    "no sub": lambda: jwt.encode({k: v for k, v in _claims().items() if k != "sub"}, SECRET),
    "no exp": lambda: jwt.encode({k: v for k, v in _claims().items() if k != "exp"}, SECRET),
    "sub a number": lambda: jwt.encode(_claims(sub=42), SECRET),
    "sub empty": lambda: jwt.encode(_claims(sub=""), SECRET),
    "exp a word": lambda: _raw({"alg": "HS256"}, _claims(exp="tomorrow"), SECRET.encode()),
    "exp infinite": lambda: _raw({"alg": "HS256"}, _claims(exp=1e400), SECRET.encode()),
    "roles a mapping": lambda: jwt.encode(_claims(roles={"admin": True}), SECRET),
    "roles numbers": lambda: jwt.encode(_claims(roles=[1]), SECRET),
    "tampered payload, old signature": _tampered,
    "signature stripped": lambda: make_token("attack-admin", ("admin",)).rsplit(".", 1)[0] + ".",
    "not a JWT": lambda: "a.b.c",
    "header not JSON": lambda: f"{_b64(b'{nope')}.{_b64(b'{}')}.{_b64(b'x')}",
    "nested header": lambda: f"{_b64(b'[' * 3000)}.{_b64(b'{}')}.{_b64(b'x')}",
}


@pytest.mark.parametrize("name", FORGED)
async def test_forged_and_malformed_tokens_are_401(client: Client, name: str) -> None:
    answer = await client.request("GET", API, token=FORGED[name]())
    assert answer.status == 401, (name, answer.body)
    assert answer.error_code() == "unauthorized"


@pytest.mark.parametrize("value", [
    "Bearer", "Bearer ", "Basic YWRtaW46YWRtaW4=", f"Token {ADMIN_TOKEN}", ADMIN_TOKEN,
    f"Bearer {ADMIN_TOKEN} {ADMIN_TOKEN}", f"Bearer\t{ADMIN_TOKEN}", "Bearer a.b",
    "Bearer \u00e9\u00e8.\u00e0.x",
])
async def test_malformed_authorization_headers_are_401(client: Client, value: str) -> None:
    answer = await client.request("GET", API, headers={"Authorization": value})
    assert answer.status == 401, (value, answer.body)
    assert answer.error_code() == "unauthorized"


async def test_rotation_accepts_the_previous_secret_only(client: Client) -> None:
    previous = make_token("attack-admin", ("admin",), secret=PREVIOUS_SECRET)
    assert (await client.request("GET", API, token=previous)).status == 200
    assert (await client.request("GET", API, token=FORGED["wrong key"]())).status == 401


async def test_a_64_kib_token_is_refused_before_the_app(client: Client,
                                                       service: Served) -> None:
    """Refused by the HTTP parser; the log says so in one warning line that quotes none of
    the header (aiohttp's own error line would have quoted its first 100 bytes)."""
    marker = f"huge-token-{secrets.token_hex(4)}-"
    answer = await client.request("GET", API, token=marker + "a" * 65536)
    assert answer.status in (400, 431), answer.status
    log = service.log()
    assert marker not in log
    assert "malformed HTTP request refused: LineTooLong" in log


async def test_a_token_without_roles_is_an_ordinary_user(client: Client) -> None:
    ident = await create(client, "attack-owner-roles")
    token = jwt.encode({"sub": "attack-owner-roles", "exp": int(time.time()) + 600}, SECRET)
    assert (await client.request("GET", f"{API}/{ident}", token=token)).status == 200
    answer = await client.request("POST", f"{API}/{ident}/activate", token=token)
    assert answer.status == 403
    assert answer.error_code() == "forbidden"


# ---- every route x every caller ----------------------------------------------------------

CALLERS = ("admin", "owner", "other", "stranger")
ALL_200 = dict.fromkeys(CALLERS, 200)
OWNER_OR_ADMIN = {"admin": 200, "owner": 200, "other": 403, "stranger": 401}
ADMIN_ONLY = {"admin": 200, "owner": 403, "other": 403, "stranger": 401}
# By operationId: a route in the document without a row here fails the test below.
EXPECTED: dict[str, dict[str, int]] = {
    "createAuthorization": {"admin": 201, "owner": 201, "other": 403, "stranger": 401},
    "listAuthorizations": OWNER_OR_ADMIN,
    "checkAuthorization": OWNER_OR_ADMIN,
    "getAuthorization": OWNER_OR_ADMIN,
    "activateAuthorization": ADMIN_ONLY,
    "revokeAuthorization": ADMIN_ONLY,
    "assessAuthorization": OWNER_OR_ADMIN,
    "health": ALL_200, "liveness": ALL_200, "readiness": ALL_200, "metrics": ALL_200,
    "openapi": ALL_200,
}
OPERATIONS = {spec["operationId"]: (method.upper(), path)
              for path, item in DOCUMENT["paths"].items()
              for method, spec in item.items() if isinstance(spec, dict)}


def test_every_documented_operation_has_expectations() -> None:
    assert set(EXPECTED) == set(OPERATIONS)


def _request_for(operation: str, owner: str, ident: str) -> tuple[str, str, dict[str, Any]]:
    """(method, path, aiohttp keywords): a well-formed request on the owner's data."""
    method, path = OPERATIONS[operation]
    path = path.replace("{id}", ident)
    kwargs: dict[str, Any] = {}
    if operation == "createAuthorization":
        kwargs["json"] = {"userId": owner, "roleType": "AUTH_CITY_COMPANY",
                          "regionCode": "440100"}
    elif operation == "listAuthorizations":
        kwargs["params"] = {"userId": owner}
    elif operation == "checkAuthorization":
        kwargs["params"] = {"userId": owner, "roleType": "COMMUNITY", "regionCode": "440106"}
    elif operation == "revokeAuthorization":
        kwargs["json"] = {"reason": "attack test"}
    return method, path, kwargs


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("operation", EXPECTED)
async def test_every_route_answers_each_caller_as_documented(
        client: Client, operation: str, caller: str) -> None:
    owner = f"attack-owner-{secrets.token_hex(4)}"
    ident = await create(client, owner)
    tokens = {"admin": ADMIN_TOKEN, "owner": make_token(owner),
              "other": make_token(f"attack-other-{secrets.token_hex(4)}"), "stranger": None}
    method, path, kwargs = _request_for(operation, owner, ident)
    answer = await client.request(method, path, token=tokens[caller], **kwargs)
    assert answer.status == EXPECTED[operation][caller], (operation, caller, answer.body)
    if answer.status >= 400:
        assert answer.error_code() in ("unauthorized", "forbidden")


# ---- injection strings in every parameter -----------------------------------------------

INJECTIONS = {
    "sql": "' OR '1'='1'; DROP TABLE authorizations; --",
    "sql-comment": "admin'/*",
    "traversal": "../../../../etc/passwd",
    "nul": "abc\x00def",
    "unicode": "\u7528\u6237\u202e\ufeff\u00e9\U0001f600",
    "crlf": "x\r\nSet-Cookie: a=b",
    "format": "%s%n{0}${jndi:ldap://127.0.0.1/a}",
    "long": "a" * 4000,
}
VALID_QUERY = {"userId": "inject-user", "roleType": "COMMUNITY", "regionCode": "440106",
               "status": "PENDING", "limit": "5", "cursor": f"1.{MISSING}"}
VALID_BODY = {"createAuthorization": {"userId": "inject-user", "roleType": "COMMUNITY",
                                      "regionCode": "440106"},
              "revokeAuthorization": {"reason": "fine"}}


def _targets() -> list[tuple[str, str, str]]:
    """(operationId, where, name) for every path/query parameter and body property."""
    out: list[tuple[str, str, str]] = []
    for operation, (method, path) in OPERATIONS.items():
        item = DOCUMENT["paths"][path]
        spec = item[method.lower()]
        for param in [*item.get("parameters", []), *spec.get("parameters", [])]:
            out.append((operation, param["in"], param["name"]))
        out.extend((operation, "body", name) for name in VALID_BODY.get(operation, {}))
    return out


def _database_state(url: str) -> tuple[Any, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM authorizations),"
            " (SELECT md5(coalesce(string_agg(a::text, ',' ORDER BY id), ''))"
            "  FROM authorizations a), (SELECT count(*) FROM outbox)").fetchone()
    assert row is not None
    return tuple(row)


def test_every_parameter_is_a_target() -> None:
    names = {(op, name) for op, _, name in _targets()}
    assert {("listAuthorizations", "cursor"), ("getAuthorization", "id"),
            ("createAuthorization", "regionCode"), ("revokeAuthorization", "reason"),
            ("checkAuthorization", "userId")} <= names


async def test_injection_strings_in_every_parameter_are_refused(
        client: Client, migrated_database: str) -> None:
    before = _database_state(migrated_database)
    seen: dict[int, int] = {}
    for operation, where, name in _targets():
        method, path = OPERATIONS[operation]
        for label, value in INJECTIONS.items():
            ident = value if (where, name) == ("path", "id") else MISSING
            url = path.replace("{id}", quote(ident, safe=""))
            kwargs: dict[str, Any] = {}
            if where == "query":
                kwargs["params"] = {**VALID_QUERY, name: value}
            body = VALID_BODY.get(operation)
            if body is not None:
                kwargs["json"] = {**body, name: value} if where == "body" else body
            answer = await client.request(method, url, token=ADMIN_TOKEN, **kwargs)
            where_label = (operation, where, name, label)
            assert 400 <= answer.status < 500, (where_label, answer.status, answer.body)
            answer.error_code()
            seen[answer.status] = seen.get(answer.status, 0) + 1
    assert _database_state(migrated_database) == before
    assert 400 in seen


@pytest.mark.parametrize("raw", [
    b'{"reason": "\\ud800"}', b'{"reason": NaN}', b'{"reason": "a\\u0000b"}',
    b'\xef\xbb\xbf{"reason": "bom"}', b'{"reason": ' + b'[' * 5000 + b'}',
])
async def test_bodies_postgresql_could_not_store_are_400(client: Client, raw: bytes) -> None:
    ident = await create(client, f"attack-raw-{secrets.token_hex(4)}")
    answer = await client.request("POST", f"{API}/{ident}/revoke", token=ADMIN_TOKEN,
                                  data=raw, headers={"Content-Type": "application/json"})
    assert answer.status == 400, answer.body
    assert answer.error_code() == "invalid_request"


async def test_sql_in_free_text_is_stored_as_text(client: Client) -> None:
    ident = await create(client, f"attack-sql-{secrets.token_hex(4)}")
    answer = await client.request("POST", f"{API}/{ident}/revoke", token=ADMIN_TOKEN,
                                  json={"reason": INJECTIONS["sql"]})
    assert answer.status == 200, answer.body
    assert answer.json()["revokeReason"] == INJECTIONS["sql"]
    stored = await client.request("GET", f"{API}/{ident}", token=ADMIN_TOKEN)
    assert stored.json()["revokeReason"] == INJECTIONS["sql"]


# ---- sizes ------------------------------------------------------------------------------

async def test_a_body_over_the_limit_is_413(client: Client) -> None:
    limit = 64 * 1024  # HTTP_BODY_LIMIT's default, which served() keeps
    body = b'{"userId": "' + b"u" * limit + b'"}'
    answer = await client.request("POST", API, token=ADMIN_TOKEN, data=body,
                                  headers={"Content-Type": "application/json"})
    assert answer.status == 413
    assert answer.error_code() == "payload_too_large"


async def test_a_chunked_body_over_the_limit_is_413(client: Client) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"userId": "'
        for _ in range(80):  # 80 KiB, no Content-Length to check up front
            yield b"u" * 1024
        yield b'"}'

    answer = await client.request("POST", API, token=ADMIN_TOKEN, data=chunks(),
                                  headers={"Content-Type": "application/json"})
    assert answer.status == 413
    assert answer.error_code() == "payload_too_large"


@pytest.mark.parametrize("headers", [
    {"X-Big": "b" * 65536},
    {f"X-Many-{i}": "v" for i in range(300)},
], ids=["one 64 KiB header", "300 headers"])
async def test_oversized_headers_are_refused_cleanly(client: Client,
                                                     headers: dict[str, str]) -> None:
    answer = await client.request("GET", "/health/live", headers=headers)
    assert answer.status in (400, 431), answer.status


async def test_a_16_kib_url_is_refused_cleanly(client: Client) -> None:
    answer = await client.request("GET", f"{API}?cursor={'c' * 16384}", token=ADMIN_TOKEN)
    assert answer.status in (400, 414), answer.status


# ---- slow clients -----------------------------------------------------------------------

SLOW_SOCKETS = 50
SLOW_SECONDS = 10


async def test_slow_clients_do_not_stop_others(client: Client, service: Served) -> None:
    """50 connections each send a header line a second for 10 s (slowloris, bounded);
    meanwhile an ordinary client keeps getting prompt answers."""
    port = int(service.base_url.rsplit(":", 1)[1])
    writers: list[asyncio.StreamWriter] = []
    try:
        for _ in range(SLOW_SOCKETS):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            writers.append(writer)
        latencies: list[float] = []
        for second in range(SLOW_SECONDS):
            for writer in writers:
                writer.write(f"X-Slow-{second}: y\r\n".encode())
            until = time.monotonic() + 1
            while time.monotonic() < until:
                started = time.monotonic()
                answer = await client.request("GET", "/health/live")
                latencies.append(time.monotonic() - started)
                assert answer.status == 200
                await asyncio.sleep(0.2)  # the ordinary client's own pace
        print(f"ordinary client during slowloris: {len(latencies)} requests, "
              f"max {max(latencies) * 1000:.0f} ms")
        assert max(latencies) < 1.0
    finally:
        for writer in writers:
            writer.close()


async def test_a_half_sent_request_is_closed_after_the_idle_timeout(config: Config) -> None:
    """The server drops a connection whose request never completes once its keep-alive
    timeout passes (aiohttp starts that timer at connect and does not restart it on a
    trickle). `serve` uses app.KEEPALIVE_TIMEOUT; here a short one keeps the test short."""
    server = TestServer(create_app(config))
    await server.start_server(keepalive_timeout=2)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        started = time.monotonic()
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        got = b"nothing yet"
        while time.monotonic() - started < 8:
            writer.write(b"X-Slow: y\r\n")  # keeps trickling: still closed on time
            try:
                got = await asyncio.wait_for(reader.read(1024), timeout=0.5)
            except TimeoutError:
                continue
            break
        elapsed = time.monotonic() - started
        writer.close()
        assert got == b"", "the server kept a half-sent request open"
        assert 1.5 < elapsed < 5, elapsed
    finally:
        await server.close()


# ---- bursts of connections ---------------------------------------------------------------

BURST = 1000


def accept_queue_size(port: int) -> int:
    """The listening socket's accept queue size, as the kernel reports it (`ss`'s Send-Q)."""
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[2])


def somaxconn() -> int:
    """The kernel's cap on any accept queue in this network namespace."""
    return int(Path("/proc/sys/net/core/somaxconn").read_text())


async def test_a_burst_of_new_connections_is_queued_not_dropped(service: Served) -> None:
    """A client opening a thousand connections at once (a load balancer under load does)
    finds them all queued: the accept queue is app.LISTEN_BACKLOG, capped by the kernel,
    not aiohttp's 128 that dropped SYNs into 1-7 s retries; each one is then answered."""
    port = int(service.base_url.rsplit(":", 1)[1])
    assert accept_queue_size(port) == min(LISTEN_BACKLOG, somaxconn()) >= BURST

    async def one() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Connection: close\r\n\r\n")
            return await reader.read()
        finally:
            writer.close()

    async with asyncio.timeout(30):
        answers = await asyncio.gather(*(one() for _ in range(BURST)))
    service.bodies.extend(answers)
    assert sum(a.startswith(b"HTTP/1.1 200") for a in answers) == BURST


# ---- secrets ----------------------------------------------------------------------------

async def test_no_secret_in_what_a_dependency_failure_logs_and_answers(
        devenv: Env, migrated_database: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Where a secret would most likely leak: the database and Redis unreachable (closed
    ports, passwords still configured), so every request logs a connection failure."""
    closed = procs.free_port()
    database = f"postgresql://postgres:{DB_PASSWORD}@127.0.0.1:{closed}/nowhere?pool_timeout=2"
    folder = tmp_path_factory.mktemp("attacks-down")
    with served(devenv, migrated_database, folder, ready="/health/live",
                extra={"DATABASE_URL": database, "REDIS_PORT": str(closed)}) as down:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            client = Client(down, http)
            for path in ("/health", "/health/ready", API, f"{API}/{MISSING}",
                         f"{API}/check?userId=u&roleType=COMMUNITY&regionCode=440106"):
                answer = await client.request("GET", path, token=ADMIN_TOKEN)
                assert answer.status == 503, (path, answer.body)
            answer = await client.request("POST", API, token=ADMIN_TOKEN, json={
                "userId": "down-user", "roleType": "COMMUNITY", "regionCode": "440106"})
            assert answer.status == 503
            assert answer.error_code() == "dependency_unavailable"
        assert "database unavailable" in down.log()
        assert down.leaked() == []
