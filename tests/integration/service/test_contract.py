"""The API contract: schemathesis generates requests from the served `/openapi.json` and
runs every one of its checks on each answer (no server error, every status, content type,
header and body documented, schema-valid requests accepted, schema-invalid ones refused,
authentication not ignored, ...), against the real service process.

Deterministic: Hypothesis derandomized (the seed comes from the test, not the clock), no
example database; the service runs on a database of this module's own."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.specs.openapi.schemas import OpenApiSchema

from authz_service.openapi import load_document

from .conftest import ADMIN, Env, bearer
from .served import Served, no_secret_left, served

pytestmark = [pytest.mark.servers, pytest.mark.xdist_group("contract")]

DOCUMENT = load_document()
OPERATIONS = [(path, method) for path, item in DOCUMENT["paths"].items()
              for method in item if method in ("get", "post", "put", "patch", "delete")]
EXAMPLES = 100  # per operation and mode: about 2,000 requests in all
USER = "contract-user-1"
USER_HEADERS = bearer(USER)
# Operations a non-admin caller may use on their own data.
USER_OPERATIONS = ["createAuthorization", "listAuthorizations", "checkAuthorization",
                   "getAuthorization", "assessAuthorization"]


def settings(examples: int, **extra: Any) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=examples, derandomize=True, database=None, deadline=None,
        # shrinking only runs on a failure: it makes the reported request the smallest one
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                               HealthCheck.function_scoped_fixture], **extra)


@pytest.fixture(scope="module")
def service(devenv: Env, migrated_database: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served(devenv, migrated_database, tmp_path_factory.mktemp("contract")) as running:
        yield running
    print(f"contract: {len(running.bodies)} requests")
    no_secret_left(running)


@pytest.fixture(scope="module")
def schema(service: Served) -> OpenApiSchema:
    """Loaded from what the running service serves, not from the file."""
    loaded = schemathesis.openapi.from_url(f"{service.base_url}/openapi.json", timeout=10)
    assert isinstance(loaded, OpenApiSchema)
    # The tests send the bearer token themselves (admin or user); schemathesis' own
    # `ignored_auth` check still sends each request without it and expects a 401.
    loaded.config.generation.update(with_security_parameters=False)
    return loaded


@pytest.fixture(scope="module")
def session(service: Served) -> Iterator[requests.Session]:
    """Every response (including the checks' own follow-up requests) is kept for the
    secrets check."""
    http = requests.Session()

    def keep(response: requests.Response, *_: Any, **__: Any) -> None:
        service.bodies.append(response.content)

    http.hooks["response"].append(keep)
    yield http
    http.close()


def every_check() -> list[Any]:
    load_all_checks()
    return list(CHECKS.get_all())


def run(schema: OpenApiSchema, service: Served, session: requests.Session, path: str,
        method: str, mode: GenerationMode, headers: dict[str, str], examples: int) -> None:
    operation = schema[path][method]
    checks = every_check()

    @settings(examples)
    @given(case=operation.as_strategy(generation_mode=mode))
    def test(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(base_url=service.base_url, session=session, headers=headers,
                               checks=checks, timeout=10)

    test()


def has_input(path: str, method: str) -> bool:
    spec = DOCUMENT["paths"][path]
    return bool(spec.get("parameters") or spec[method].get("parameters")
                or spec[method].get("requestBody"))


def test_the_served_document_is_the_packaged_one(service: Served,
                                                 session: requests.Session) -> None:
    response = session.get(f"{service.base_url}/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.json() == DOCUMENT


@pytest.mark.parametrize(("path", "method"), OPERATIONS,
                         ids=[f"{m.upper()} {p}" for p, m in OPERATIONS])
def test_schema_valid_requests_as_admin(schema: OpenApiSchema, service: Served,
                                        session: requests.Session, path: str,
                                        method: str) -> None:
    run(schema, service, session, path, method, GenerationMode.POSITIVE, ADMIN, EXAMPLES)


@pytest.mark.parametrize(("path", "method"), [o for o in OPERATIONS if has_input(*o)],
                         ids=[f"{m.upper()} {p}" for p, m in OPERATIONS if has_input(p, m)])
def test_schema_invalid_requests_as_admin(schema: OpenApiSchema, service: Served,
                                          session: requests.Session, path: str,
                                          method: str) -> None:
    run(schema, service, session, path, method, GenerationMode.NEGATIVE, ADMIN, EXAMPLES)


@pytest.mark.parametrize("operation_id", USER_OPERATIONS)
def test_schema_valid_requests_as_an_ordinary_user(schema: OpenApiSchema, service: Served,
                                                   session: requests.Session,
                                                   operation_id: str) -> None:
    """Others' data is 403, the caller's own is served: both are documented answers."""
    path, method = next((p, m) for p, m in OPERATIONS
                        if DOCUMENT["paths"][p][m]["operationId"] == operation_id)
    run(schema, service, session, path, method, GenerationMode.POSITIVE, USER_HEADERS,
        EXAMPLES // 2)


ID_OPERATIONS = [(p, m) for p, m in OPERATIONS if "{id}" in p]


@pytest.mark.parametrize(("path", "method"), ID_OPERATIONS,
                         ids=[f"{m.upper()} {p}" for p, m in ID_OPERATIONS])
def test_id_routes_on_real_authorizations(schema: OpenApiSchema, service: Served,
                                          session: requests.Session, path: str,
                                          method: str) -> None:
    """Each generated request names an authorization created just before it (as the 201's
    `links` say), so the success answers of the id routes are checked, not only 404s.
    (Not a schemathesis state machine: its choice of the next step depends on what the
    server answered, which Hypothesis sees as a flaky strategy on replay.)"""
    operation = schema[path][method]
    checks = every_check()
    users = itertools.count()
    run_id = secrets.token_hex(3)  # the server's data only: generation does not see it

    @settings(EXAMPLES // 2)
    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
    def test(case: schemathesis.Case[Any]) -> None:
        created = session.post(f"{service.base_url}/api/v1/authorizations", headers=ADMIN,
                               timeout=10, json={"userId": f"linked-{run_id}-{next(users)}",
                                                 "roleType": "COMMUNITY",
                                                 "regionCode": "440106"})
        assert created.status_code == 201, created.text
        case.path_parameters = {"id": created.json()["id"]}
        response = case.call_and_validate(base_url=service.base_url, session=session,
                                          headers=ADMIN, checks=checks, timeout=10)
        assert response.status_code == 200, response.text

    test()
