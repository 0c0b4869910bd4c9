"""Schemathesis fuzzes every operation of the OpenAPI document a running instance serves.

One real ``chatrt serve`` on PostgreSQL and Redis, signed in as a browser is (session
cookie, ``X-CSRFToken`` echoed from the ``csrftoken`` cookie). For every operation in the
document, schemathesis generates valid and invalid requests (a bounded number,
derandomized) and every answer is checked: never a 5xx; status, content type and body are
the ones the document declares for that operation; a request that breaks the document is
refused; every 4xx body has the contract's error shape. Operations with ids in their path
also run with the ids of a real conversation and answer of the user, so the fuzzing
reaches the database and not only the 404 path. Register, login and logout change or end
the session, so each of them is fuzzed in sessions of its own.

Next to the fuzzers, plain regression tests for what they found: a NUL character in any
text field was a 500 on PostgreSQL, and the document claimed the session cookie on public
routes, the Litestar shape for 400s and JSON for ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import Case, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.security.conftest import (
    StartInstance,
    cookie,
    finished_exchange,
    server_errors_logged,
    signed_in,
)
from tests.support.client import PASSWORD, new_email
from tests.support.evidence import Evidence
from tests.support.instances import Instance

pytestmark = [pytest.mark.security, pytest.mark.multi]

# Requests per operation and generation mode. Register and login hash a password on every
# request (about a second each on a busy 2-core machine), so they get fewer.
EXAMPLES = 12
HASHING_EXAMPLES = 5
HASHING = frozenset({"POST /api/auth/register", "POST /api/auth/login"})
# Operations that replace or end the session they are sent in.
SESSION_CHANGING = HASHING | {"POST /api/auth/logout"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
SESSION_SECURITY: list[dict[str, list[str]]] = [{"sessionCookie": []}]
NUL = "a\x00b"


@dataclass
class Tally:
    operations: set[str] = field(default_factory=set)
    requests: int = 0
    server_errors: int = 0
    schema_violations: int = 0
    error_shape_violations: int = 0
    problems: list[str] = field(default_factory=list)

    def record(self, evidence: Evidence) -> None:
        evidence.record(
            "openapi_fuzz",
            operations=len(self.operations),
            requests=self.requests,
            server_errors=self.server_errors,
            schema_violations=self.schema_violations,
            error_shape_violations=self.error_shape_violations,
        )


@pytest.fixture(scope="module")
def instance(start_instance: StartInstance) -> Iterator[Instance]:
    # Demo answers finish within moments, so sends to the real conversation are not all 409.
    with start_instance(CHATRT_DEMO_CHUNK_DELAY_MS="1") as running:
        yield running


@pytest.fixture(scope="module")
def document(instance: Instance) -> dict[str, Any]:
    response = requests.get(f"{instance.url}/schema/openapi.json", timeout=30)
    assert response.status_code == 200
    loaded: dict[str, Any] = response.json()
    return loaded


@pytest.fixture(scope="module")
def schema(instance: Instance) -> OpenApiSchema:
    loaded = schemathesis.openapi.from_url(f"{instance.url}/schema/openapi.json")
    assert isinstance(loaded, OpenApiSchema)
    return loaded


def error_shape_problem(response: requests.Response | Response) -> str | None:
    """Why a 4xx body is not ``{"error": {"code", "message", "details"}}``, if it is not."""
    try:
        body: Any = response.json()
    except ValueError:
        return f"not JSON: {response.text[:200]!r}"
    if not isinstance(body, dict) or set(body) != {"error"}:
        return f"not an error envelope: {body!r:.200}"
    error = body["error"]
    if not isinstance(error, dict) or set(error) != {"code", "message", "details"}:
        return f"wrong error fields: {error!r:.200}"
    if not isinstance(error["code"], str) or not error["code"]:
        return f"no code: {error!r:.200}"
    if not isinstance(error["message"], str) or not error["message"]:
        return f"no message: {error!r:.200}"
    return None


def fuzz(
    operation: APIOperation[Any, Any, Any, Any],
    mode: GenerationMode,
    base_url: str,
    http: requests.Session,
    tally: Tally,
    path_parameters: dict[str, str] | None = None,
) -> None:
    """Send generated requests for one operation; tally what each answer broke."""
    # The session cookie is fixed, as the browser's is: were it generated, a bogus one would
    # sign the session out (and the jar would still send the real one with "no cookie" cases).
    # Requests without a session are test_..._exactly_where_a_request_needs_it's business.
    strategy = operation.as_strategy(
        generation_mode=mode,
        path_parameters=path_parameters,
        cookies={"session": cookie(http, "session")},
    )
    label = f"{operation.label} [{mode.value}{', real ids' if path_parameters else ''}]"
    examples = HASHING_EXAMPLES if operation.label in HASHING else EXAMPLES

    # No shrinking: every answer is judged and tallied, and a failure does not stop the run.
    @hypothesis.settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=strategy)
    def run(case: Case[Any]) -> None:
        response = case.call(base_url=base_url, session=http, timeout=30)
        tally.requests += 1
        tally.operations.add(operation.label)
        if response.status_code >= 500:
            tally.server_errors += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as failures:
            tally.schema_violations += 1
            for failure in failures.exceptions:
                tally.problems.append(
                    f"{label}: {failure.title}: {failure.message}\n"
                    f"  -> {response.status_code} {response.text[:300]}\n"
                    f"  {case.as_curl_command()}"
                )
        if 400 <= response.status_code < 500:
            problem = error_shape_problem(response)
            if problem is not None:
                tally.error_shape_violations += 1
                tally.problems.append(f"{label}: {response.status_code} {problem}")

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        # Nothing in such a request can be made invalid: no parameter, body or cookie.
        assert mode is GenerationMode.NEGATIVE, label


def test_every_operation_answers_within_its_schema_and_the_error_contract(
    instance: Instance, schema: OpenApiSchema, evidence: Evidence
) -> None:
    http = signed_in(instance)
    exchange = finished_exchange(instance, http)
    ids = {"conversation_id": exchange.conversation_id, "message_id": exchange.message_id}
    restore = f"{instance.url}/api/conversations/{exchange.conversation_id}/restore"
    tally = Tally()
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    for operation in operations:
        if operation.label in SESSION_CHANGING:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, instance.url, http, tally)
        names = {parameter.name for parameter in operation.path_parameters}
        if names:
            # Invalid requests fail validation before any lookup: random ids cover them.
            fixed = {name: ids[name] for name in names}
            fuzz(operation, GenerationMode.POSITIVE, instance.url, http, tally, fixed)
            # Whatever the fuzzer did to the conversation, the next operation finds it.
            http.post(restore, timeout=30)
    # The server's own word too: nothing it logged as an error (an unhandled exception).
    logged = server_errors_logged(instance)
    tally.server_errors += len(logged)
    tally.problems.extend(f"logged: {line:.300}" for line in logged)
    tally.record(evidence)
    assert tally.problems == [], "\n\n".join(tally.problems[:20])
    expected = {operation.label for operation in operations} - SESSION_CHANGING
    assert tally.operations == expected
    assert len(expected) >= 15
    # Still signed in as the same user: nothing above ended or replaced the session.
    me = http.get(f"{instance.url}/api/auth/me", timeout=30)
    assert me.status_code == 200


def test_register_login_and_logout_are_fuzzed_in_sessions_of_their_own(
    instance: Instance, schema: OpenApiSchema, evidence: Evidence
) -> None:
    tally = Tally()
    for label in sorted(SESSION_CHANGING):
        method, path = label.split(" ", 1)
        operation = schema[path][method]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, instance.url, signed_in(instance), tally)
    tally.record(evidence)
    assert tally.problems == [], "\n\n".join(tally.problems[:20])
    assert tally.operations == SESSION_CHANGING


def test_a_nul_character_in_any_text_field_is_a_422_naming_the_field(
    instance: Instance,
) -> None:
    """PostgreSQL text cannot hold NUL: each of these was a 500 (``internal_error``)."""
    url = instance.url
    http = signed_in(instance)
    conversation = http.post(f"{url}/api/conversations", json={}, timeout=30).json()
    conversation_id = conversation["conversation"]["id"]
    attempts: list[tuple[str, str, dict[str, Any], str]] = [
        (
            "/api/auth/register",
            "post",
            {"email": f"{NUL}@example.com", "password": PASSWORD},
            "email",
        ),
        (
            "/api/auth/register",
            "post",
            {"email": new_email(), "password": PASSWORD, "display_name": NUL},
            "display_name",
        ),
        ("/api/auth/login", "post", {"email": f"{NUL}@example.com", "password": PASSWORD}, "email"),
        ("/api/conversations", "post", {"title": NUL}, "title"),
        ("/api/conversations", "post", {"system_prompt": NUL}, "system_prompt"),
        ("/api/conversations", "post", {"model": NUL}, "model"),
        (f"/api/conversations/{conversation_id}", "patch", {"title": NUL}, "title"),
        (f"/api/conversations/{conversation_id}/messages", "post", {"content": NUL}, "content"),
        (
            f"/api/conversations/{conversation_id}/messages",
            "post",
            {"content": "hello", "client_message_id": NUL},
            "client_message_id",
        ),
    ]
    for path, method, body, name in attempts:
        response = http.request(method, f"{url}{path}", json=body, timeout=30)
        assert response.status_code == 422, (path, body, response.text)
        assert error_shape_problem(response) is None, response.text
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert any(name in str(item.get("field")) for item in error["details"]), error
    # Nothing of it was stored: the conversation is as it was created.
    after = http.get(f"{url}/api/conversations/{conversation_id}", timeout=30).json()
    assert after["conversation"]["message_count"] == 0
    assert after["conversation"]["title"] == conversation["conversation"]["title"]


def test_the_document_declares_the_session_cookie_exactly_where_a_request_needs_it(
    instance: Instance, document: dict[str, Any]
) -> None:
    assert "security" not in document  # per operation only, never for the whole document
    anonymous = requests.Session()
    public = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            declared = operation.get("security")
            assert declared in (None, SESSION_SECURITY), (method, path, declared)
            # Placeholder ids: the session check comes before any lookup or validation.
            url = instance.url + path.replace("{conversation_id}", "x").replace("{message_id}", "x")
            # register and login without a body: a 4xx that is not about the session.
            status = anonymous.request(method, url, timeout=30).status_code
            assert (status == 401) == (declared is not None), (method, path, status)
            if declared is None:
                public.add(f"{method.upper()} {path}")
    assert public == {
        "POST /api/auth/register",
        "POST /api/auth/login",
        "GET /health/live",
        "GET /health/ready",
        "GET /metrics",
    }


def test_the_document_gives_every_error_the_contract_shape_and_metrics_as_text(
    document: dict[str, Any],
) -> None:
    error_ref = "#/components/schemas/ErrorResponse"
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": error_ref}, (method, path, status, schema)
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert set(metrics) == {"text/plain"}
