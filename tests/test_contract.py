"""The published HTTP contract: the OpenAPI document is valid, served, and strict."""

from __future__ import annotations

import json

import azure.functions as func
import pytest
import yaml
from openapi_spec_validator import validate

import OpenApiDocument
from tests.support.contract import DOCUMENT, DOCUMENT_PATH, ContractError, check_answer


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"].startswith("3.1")
    validate(DOCUMENT)


def test_the_app_serves_the_document_as_it_is_kept() -> None:
    request = func.HttpRequest(
        method="GET", url="http://localhost:7071/api/singletons/openapi.yaml", body=b""
    )
    response = OpenApiDocument.main(request)
    check_answer(
        "GET",
        response.status_code,
        dict(response.headers),
        response.get_body(),
        "/singletons/openapi.yaml",
    )
    assert response.get_body() == DOCUMENT_PATH.read_bytes()
    assert yaml.safe_load(response.get_body())["paths"]


def test_every_problem_kind_the_code_can_answer_is_documented() -> None:
    """Each kind of problems.KINDS (every constructor's kind is one) is in the document."""
    import durable_singleton._problems as problems

    assert len(problems.KINDS) >= 19
    text = DOCUMENT_PATH.read_text()
    missing = {k for k in problems.KINDS if f"urn:singleton-starter:problem:{k}" not in text}
    assert missing == set()


# -- the checker fails in both directions ----------------------------------------------

STARTED = {
    "id": "a",
    "statusQueryGetUri": "http://x/api/orchestrators/O/a",
    "stopDeleteUri": "http://x/api/orchestrators/O/a",
    "terminateDeleteUri": "http://x/api/orchestrators/O/a?mode=terminate",
    "outcome": "started",
}
HEADERS = {"Content-Type": "application/json", "Location": "http://x/a", "Retry-After": "10"}


def test_a_documented_answer_passes() -> None:
    assert check_answer("POST", 202, HEADERS, json.dumps(STARTED).encode()) == STARTED


@pytest.mark.parametrize(
    "status,headers,body,words",
    [
        (201, HEADERS, STARTED, "status 201 is not documented"),
        (202, {**HEADERS, "X-Secret": "1"}, STARTED, "header x-secret is not documented"),
        (202, {**HEADERS, "Retry-After": "soon"}, STARTED, "header retry-after"),
        (202, {**HEADERS, "Content-Type": "text/plain"}, STARTED, "content type"),
        (202, HEADERS, {**STARTED, "extra": 1}, "does not match"),
        (202, HEADERS, {k: v for k, v in STARTED.items() if k != "id"}, "does not match"),
        (202, HEADERS, {k: v for k, v in STARTED.items() if k != "outcome"}, "does not match"),
        (202, HEADERS, {**STARTED, "outcome": "queued"}, "does not match"),
    ],
)
def test_a_disagreement_fails(status, headers, body, words) -> None:
    with pytest.raises(ContractError, match=words):
        check_answer("POST", status, headers, json.dumps(body).encode())


def test_a_problem_of_the_wrong_kind_for_its_status_fails() -> None:
    problem = {
        "type": "urn:singleton-starter:problem:lock-busy",
        "title": "t",
        "status": 409,
        "detail": "d",
    }
    headers = {"Content-Type": "application/problem+json"}
    with pytest.raises(ContractError):
        check_answer("POST", 409, headers, json.dumps(problem).encode())
