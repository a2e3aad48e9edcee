"""The HTTP transport under the Durable SDK's client: an app-owned aiohttp session.

The SDK's own transport (``azure.durable_functions.models.utils.http_utils``) keeps
one module-level session and *closes* it whenever any request on it fails with a
connection error. One caller's reset connection then fails every other caller's
request in flight on that session, and a start the Durable API had accepted is
answered as a failure. This module gives the SDK's client request functions of the
same shape on a session the app owns: a failed request fails only itself, and a
session is closed only at shutdown (:func:`close_sessions`).

The SDK still builds every URL and reads every answer; only the bytes go through here.
The per-call time limit is set by :mod:`durable_singleton._durable` around each call.
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional

import aiohttp

#: One session per event loop: an aiohttp session belongs to the loop that made it.
_sessions: Dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}


def _session() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        # No total timeout here: :mod:`durable_singleton._durable` bounds each call as a whole.
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100, enable_cleanup_closed=True),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
        )
        _sessions[loop] = session
    return session


def _headers(
    trace_parent: Optional[str], trace_state: Optional[str], function_invocation_id: Optional[str]
) -> Dict[str, str]:
    headers = {}
    if trace_parent:
        headers["traceparent"] = trace_parent
    if trace_state:
        headers["tracestate"] = trace_state
    if function_invocation_id:
        headers["X-Azure-Functions-InvocationId"] = function_invocation_id
    return headers


async def post(
    url: str,
    data: Any = None,
    trace_parent: Optional[str] = None,
    trace_state: Optional[str] = None,
    function_invocation_id: Optional[str] = None,
) -> List[Any]:
    """POST ``data`` as JSON; return ``[status, decoded body]`` as the SDK expects."""
    headers = _headers(trace_parent, trace_state, function_invocation_id)
    async with _session().post(url, json=data, headers=headers) as response:
        return [response.status, await response.json(content_type=None)]


async def get(url: str, function_invocation_id: Optional[str] = None) -> List[Any]:
    """GET ``url``; return ``[status, decoded body]`` (``""`` for an empty body)."""
    headers = _headers(None, None, function_invocation_id)
    async with _session().get(url, headers=headers) as response:
        body = await response.json(content_type=None)
        return [response.status, "" if body is None else body]


async def delete(url: str, function_invocation_id: Optional[str] = None) -> List[Any]:
    """DELETE ``url``; return ``[status, decoded body]``."""
    headers = _headers(None, None, function_invocation_id)
    async with _session().delete(url, headers=headers) as response:
        return [response.status, await response.json(content_type=None)]


async def close_sessions() -> None:
    """Close the running loop's session (at shutdown, in tests)."""
    session = _sessions.pop(asyncio.get_running_loop(), None)
    if session is not None:
        await session.close()
