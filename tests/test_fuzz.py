"""Property-based fuzzing of the HTTP API, from the contract and from invalid variants.

Requests are generated from the OpenAPI document's own parameter rules (ids that
match its pattern, its enums) and from deliberately invalid variants (ids and query
values of any text, bodies of every JSON shape, sizes and encodings). With every
dependency healthy, the properties are: every answer validates against the document
(the ``start`` and ``instance`` fixtures check each one), no answer is a 5xx, and a
request the app refuses starts nothing and sends nothing to the Durable API or to
storage.

The number of examples per property is FUZZ_EXAMPLES (default 40, as in the README's
test command); a longer run: ``FUZZ_EXAMPLES=2000 scripts/test.sh -k fuzz``.
"""

from __future__ import annotations

import json
import os
import re
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.contract import DOCUMENT

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_ID_SCHEMA = DOCUMENT["components"]["parameters"]["instanceId"]["schema"]
_ID_PATTERN = re.compile(_ID_SCHEMA["pattern"])
_POST = DOCUMENT["paths"]["/orchestrators/{functionName}/{instanceId}"]["post"]
_PARAMETERS = {parameter["name"]: parameter for parameter in _POST["parameters"]}
_ON_CONFLICT = _PARAMETERS["onConflict"]["schema"]["enum"]
_REUSE = _PARAMETERS["reuse"]["schema"]["enum"]

#: Ids the document allows: its pattern, within its length bounds.
valid_ids = st.from_regex(_ID_PATTERN, fullmatch=True).filter(
    lambda v: _ID_SCHEMA["minLength"] <= len(v) <= _ID_SCHEMA["maxLength"]
)
#: Any text at all, most of it not an id; and near misses of the rules.
any_ids = st.one_of(
    st.text(min_size=0, max_size=120),
    st.text(alphabet=string.printable, max_size=110),
    st.sampled_from(["@job", ".", "..", "a/b", "a?b", "a#b", "a b", "a%20b", "x" * 101, ""]),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)
job_inputs = st.fixed_dictionaries(
    {},
    optional={
        "items": st.lists(json_values, max_size=5),
        "repeatEverySeconds": st.integers(-5, 100_000),
        "maxPasses": st.integers(-2, 5),
        "pass": st.integers(-2, 5),
        "extra": json_values,
    },
)
raw_bodies = st.one_of(
    job_inputs.map(lambda v: json.dumps(v).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
    st.sampled_from(
        [b"[1e400]", b'{"items": [NaN]}', b"[" * 70 + b"]" * 70, b"\xef\xbb\xbf{}", b'{"items":']
    ),
)
query_values = st.one_of(st.sampled_from(_ON_CONFLICT + _REUSE), st.text(max_size=12))
_KEY_SCHEMA = next(p for p in _POST["parameters"] if p["name"] == "Idempotency-Key")["schema"]
#: Idempotency-Keys the document allows, and any text.
keys = st.one_of(
    st.from_regex(_KEY_SCHEMA["pattern"], fullmatch=True).filter(
        lambda v: len(v) <= _KEY_SCHEMA["maxLength"]
    ),
    st.text(max_size=300),
)


@pytest.mark.timeout(900)  # real HTTP per example: slow machines need more than the default
@FUZZ
@given(
    instance_id=st.one_of(valid_ids, any_ids),
    on_conflict=st.one_of(st.none(), query_values),
    reuse=st.one_of(st.none(), query_values),
    body=raw_bodies,
    key=st.one_of(st.none(), keys),
)
async def test_any_start_request_is_answered_by_the_contract(
    start, durable, instance_id: str, on_conflict: Any, reuse: Any, body: bytes, key: Any
) -> None:
    durable.reset()
    query = "&".join(
        f"{name}={value}"
        for name, value in (("onConflict", on_conflict), ("reuse", reuse))
        if value is not None
    )
    # checked by the contract
    response = await start(instance_id, query=query, raw_body=body, key=key)
    assert response.status_code < 500, response.get_body()
    if response.status_code >= 400:
        assert durable.accepted_starts == []


@FUZZ
@given(instance_id=any_ids.filter(lambda v: not _ID_PATTERN.fullmatch(v) or len(v) > 100))
async def test_an_invalid_id_reaches_nothing(
    start, instance, durable, blob_requests, instance_id: str
) -> None:
    durable.reset()
    answers = [
        await start(instance_id, {"items": [1]}),
        await instance("GET", instance_id),
        await instance("DELETE", instance_id, query="mode=terminate"),
    ]
    assert {a.status_code for a in answers} <= {400, 404}
    assert sum(durable.calls.values()) == 0
    assert blob_requests.requests == 0  # no lock was taken, not even looked at


@FUZZ
@given(
    instance_id=valid_ids,
    status=st.sampled_from(
        ["Pending", "Running", "ContinuedAsNew", "Suspended", "Completed", "Failed", None]
    ),
    mode=st.one_of(st.none(), st.sampled_from(["stop", "terminate"]), st.text(max_size=10)),
)
async def test_any_status_or_stop_request_is_answered_by_the_contract(
    instance, durable, instance_id: str, status: Any, mode: Any
) -> None:
    durable.reset()
    if status is not None:
        durable.put(instance_id, status)
    query = "" if mode is None else f"mode={mode}"
    got = await instance("GET", instance_id)
    stopped = await instance("DELETE", instance_id, query=query)
    assert got.status_code == (200 if status else 404)
    assert stopped.status_code < 500
