"""Checks an HTTP answer against the app's OpenAPI document, in both directions.

An answer fails when its status is not documented for the operation, its content
type is not the documented one, its body does not validate against the documented
schema (the schemas forbid undocumented members), a header it sends is not
documented, or a header the document requires is missing. The schemas are JSON
Schema 2020-12 (OpenAPI 3.1), checked with ``jsonschema``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import yaml
from jsonschema import Draft202012Validator

DOCUMENT_PATH = Path(__file__).resolve().parents[2] / "durable_singleton" / "openapi.yaml"
DOCUMENT: Dict[str, Any] = yaml.safe_load(DOCUMENT_PATH.read_text(encoding="utf-8"))
INSTANCE_PATH = "/orchestrators/{functionName}/{instanceId}"
LIST_PATH = "/singletons/{functionName}"

#: Headers every HTTP answer may carry without the document naming them.
_TRANSPORT_HEADERS = {"content-type", "content-length"}


class ContractError(AssertionError):
    """An answer and the document disagree."""


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _resolve(node: Dict[str, Any]) -> Dict[str, Any]:
    """Follow a ``$ref`` to a component (responses and headers may be references)."""
    while "$ref" in node:
        target: Any = DOCUMENT
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def validator_at(pointer: str) -> Draft202012Validator:
    """A validator for the schema at ``pointer``, whose references resolve in the
    document (the document is the root schema; unknown keywords are ignored)."""
    return Draft202012Validator({**DOCUMENT, "$ref": pointer})


def check_answer(
    method: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    path: str = INSTANCE_PATH,
) -> Optional[Any]:
    """Raise ContractError unless the answer is exactly what the document says.

    Returns the decoded body (None when there is none).
    """
    operation = DOCUMENT["paths"][path][method.lower()]
    responses = operation["responses"]
    if str(status) not in responses:
        raise ContractError(f"{method} {path}: status {status} is not documented")
    response = _resolve(responses[str(status)])
    documented_headers = {
        name.lower(): _resolve(h) for name, h in response.get("headers", {}).items()
    }
    sent = {name.lower(): value for name, value in headers.items()}
    for name in sent.keys() - documented_headers.keys() - _TRANSPORT_HEADERS:
        raise ContractError(f"{method} {path} {status}: header {name} is not documented")
    for name, header in documented_headers.items():
        if header.get("required") and name not in sent:
            raise ContractError(f"{method} {path} {status}: required header {name} is missing")
        if name in sent:
            errors = list(Draft202012Validator(header["schema"]).iter_errors(sent[name]))
            if errors:
                raise ContractError(
                    f"{method} {path} {status}: header {name}: {errors[0].message}"
                )
    content = response.get("content", {})
    media_type = sent.get("content-type", "").split(";")[0].strip()
    if not content:
        if body:
            raise ContractError(f"{method} {path} {status}: a body is not documented")
        return None
    if media_type not in content:
        raise ContractError(
            f"{method} {path} {status}: content type {media_type!r} not documented"
        )
    if media_type.endswith("yaml") or media_type.startswith("text/"):
        return body.decode("utf-8")
    document = json.loads(body)
    pointer = _pointer(
        "paths", path, method.lower(), "responses", str(status), "content", media_type, "schema"
    )
    if "$ref" in responses[str(status)]:
        reference = responses[str(status)]["$ref"].lstrip("#/").split("/")
        pointer = _pointer(*reference, "content", media_type, "schema")
    errors = sorted(validator_at(pointer).iter_errors(document), key=lambda e: e.path)
    if errors:
        raise ContractError(
            f"{method} {path} {status}: body does not match the document: {errors[0].message}"
        )
    return document


def check_response(method: str, response: Any, path: str = INSTANCE_PATH) -> Any:
    """``check_answer`` for an ``azure.functions.HttpResponse``; returns it."""
    check_answer(method, response.status_code, dict(response.headers), response.get_body(), path)
    return response
