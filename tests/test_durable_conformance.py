"""The Durable double answers as the extension does: every row of the conformance table
(tests/support/durable_conformance.py), each with its source, sent over HTTP."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import pytest

from tests.support.durable_conformance import ABSENT, ARRAY, EMPTY, ROWS, Row
from tests.support.durable_double import DurableDouble


def matches(expected: Any, actual: Any) -> bool:
    if isinstance(expected, re.Pattern):
        return isinstance(actual, str) and bool(expected.fullmatch(actual))
    return bool(expected == actual)


@pytest.mark.parametrize("row", ROWS, ids=[row.behaviour for row in ROWS])
async def test_the_double_answers_as_the_extension(durable: DurableDouble, row: Row) -> None:
    durable.reset(**row.knobs)
    if row.given is not None:
        durable.put("x", row.given)
    for other in row.also:
        durable.put(other, "Running")
    async with aiohttp.ClientSession() as session:
        async with session.request(
            row.method,
            durable.rpc_base_url + row.path,
            headers=dict(row.request_headers),
            data=row.request_body,
        ) as response:
            raw = await response.read()
            headers = response.headers
            code = response.status
    assert code == row.status, (row.source, raw)
    for name, expected in row.headers.items():
        if expected == ABSENT:
            assert name not in headers, (row.source, name)
        else:
            assert name in headers and matches(expected, headers[name]), (row.source, name)
    if row.body == EMPTY:
        assert raw == b"", row.source
        return
    body = json.loads(raw)
    if row.body == ARRAY:
        assert isinstance(body, list), row.source
        return
    assert isinstance(row.body, dict) and isinstance(body, dict)
    for member, expected in row.body.items():
        assert member in body, (row.source, member)
        if expected is not None:
            assert matches(expected, body[member]), (row.source, member, body[member])


def test_every_row_names_its_source_and_every_call_the_app_makes_is_covered() -> None:
    assert all(row.source for row in ROWS)
    calls = {
        (row.method, row.path.split("?")[0].replace("NoSuchOrchestrator", "F")) for row in ROWS
    }
    for call in [
        ("GET", "instances/x"),
        ("GET", "instances"),
        ("POST", "orchestrators/SingletonOrchestrator/x"),
        ("POST", "instances/x/terminate"),
        ("POST", "instances/x/raiseEvent/Ping"),
        ("DELETE", "instances/x"),
    ]:
        assert call in calls, call
