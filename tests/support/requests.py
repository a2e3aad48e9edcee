"""Requests to HttpStartSingle built the way the Functions host builds them."""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional
from urllib.parse import parse_qsl

import azure.functions as func

ORIGIN = "http://localhost:7071"


def start_request(
    function_name: str,
    instance_id: str,
    body: Any = None,
    query: str = "",
    raw_body: Optional[bytes] = None,
    headers: Optional[Mapping[str, str]] = None,
) -> func.HttpRequest:
    """A POST to /api/orchestrators/{functionName}/{instanceId}.

    ``body`` is sent as JSON; ``raw_body`` is sent as it is. ``query`` is the query
    string without ``?``; the host passes it both in the URL and as ``params``.
    ``headers`` are sent besides Content-Type.
    """
    if raw_body is None:
        raw_body = b"" if body is None else json.dumps(body).encode("utf-8")
    url = f"{ORIGIN}/api/orchestrators/{function_name}/{instance_id}"
    if query:
        url += f"?{query}"
    return func.HttpRequest(
        method="POST",
        url=url,
        body=raw_body,
        headers={"Content-Type": "application/json", **(headers or {})},
        params=dict(parse_qsl(query, keep_blank_values=True)),
        route_params={"functionName": function_name, "instanceId": instance_id},
    )


def instance_request(
    method: str, function_name: str, instance_id: str, query: str = ""
) -> func.HttpRequest:
    """A GET or DELETE on /api/orchestrators/{functionName}/{instanceId}."""
    route = {"functionName": function_name, "instanceId": instance_id}
    return _bodiless(method, f"orchestrators/{function_name}/{instance_id}", query, route)


def list_request(function_name: str, query: str = "") -> func.HttpRequest:
    """A GET on /api/singletons/{functionName} (the list)."""
    route = {"functionName": function_name}
    return _bodiless("GET", f"singletons/{function_name}", query, route)


def _bodiless(
    method: str, path: str, query: str, route_params: Mapping[str, str]
) -> func.HttpRequest:
    """A request without a body to /api/``path``, as the host passes it."""
    url = f"{ORIGIN}/api/{path}" + (f"?{query}" if query else "")
    return func.HttpRequest(
        method=method,
        url=url,
        body=b"",
        headers={},
        params=dict(parse_qsl(query, keep_blank_values=True)),
        route_params=dict(route_params),
    )


def limited_request(
    function_name: str,
    key: str,
    body: Any = None,
    query: str = "",
    headers: Optional[Mapping[str, str]] = None,
) -> func.HttpRequest:
    """A POST to /api/limits/{functionName}/{key} (a start with a limit per key)."""
    url = f"{ORIGIN}/api/limits/{function_name}/{key}" + (f"?{query}" if query else "")
    return func.HttpRequest(
        method="POST",
        url=url,
        body=b"" if body is None else json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json", **(headers or {})},
        params=dict(parse_qsl(query, keep_blank_values=True)),
        route_params={"functionName": function_name, "key": key},
    )


def queued_request(method: str, function_name: str, key: str, request_id: str) -> func.HttpRequest:
    """A GET or DELETE on /api/limits/{functionName}/{key}/requests/{requestId}."""
    route = {"functionName": function_name, "key": key, "requestId": request_id}
    return _bodiless(method, f"limits/{function_name}/{key}/requests/{request_id}", "", route)
