"""Checks of the app's answers that several test modules share."""

from __future__ import annotations

import json
from typing import Any, Dict

import azure.functions as func

#: The Durable extension's management URLs, as the default answers carry them.
MANAGEMENT_KEYS = {
    "id",
    "statusQueryGetUri",
    "sendEventPostUri",
    "terminatePostUri",
    "rewindPostUri",
    "purgeHistoryDeleteUri",
    "restartPostUri",
    "suspendPostUri",
    "resumePostUri",
}


def body(response: func.HttpResponse) -> Dict[str, Any]:
    """The JSON body of an answer."""
    document: Dict[str, Any] = json.loads(response.get_body())
    return document


def kind(response: func.HttpResponse) -> str:
    """The problem kind of an answer (the end of its ``type``), or its status code for a
    success."""
    if response.status_code < 300:
        return str(response.status_code)
    return str(json.loads(response.get_body())["type"].rsplit(":", 1)[1])


def problem(response: func.HttpResponse, status: int, kind: str) -> Dict[str, Any]:
    """Check ``response`` is the problem+json ``kind`` with ``status``; return its body."""
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/problem+json"
    body = json.loads(response.get_body())
    assert body["type"] == f"urn:singleton-starter:problem:{kind}"
    assert body["status"] == status
    assert body["title"] and body["detail"]
    text = response.get_body().decode()
    assert "Traceback" not in text and "Exception" not in text
    return body
