"""Validation of the route, query and body, without the host or the Durable API."""

from __future__ import annotations

import json
import string

import azure.durable_functions as df
import pytest
from hypothesis import given
from hypothesis import strategies as st

from durable_singleton import Catalog
from durable_singleton._policy import OnConflict, Reuse
from durable_singleton._problems import ProblemError
from durable_singleton._request import (
    MAX_INSTANCE_ID_LENGTH,
    check_function_name,
    check_instance_id,
    read_json_body,
)
from durable_singleton._settings import Settings
from durable_singleton._validation import parse_start_request, read_choice
from tests.support.app import APP_ROOT
from tests.support.requests import start_request

ALLOWED = string.ascii_letters + string.digits + "-_.:~@"
ORCHESTRATORS = {"SingletonOrchestrator"}
#: The v1 app's orchestrators, with SingletonOrchestrator's input rule.
CATALOG = Catalog.from_folders(APP_ROOT)


def problem_of(call, *args):
    with pytest.raises(ProblemError) as raised:
        call(*args)
    return raised.value.problem


# -- instance id ---------------------------------------------------------------------

valid_ids = st.text(alphabet=ALLOWED, min_size=1, max_size=MAX_INSTANCE_ID_LENGTH).filter(
    lambda s: not s.startswith("@") and set(s) != {"."}
)


@given(valid_ids)
def test_ids_from_the_allowed_characters_pass_unchanged(instance_id: str) -> None:
    assert check_instance_id(instance_id) == instance_id


@given(
    st.text(min_size=1, max_size=MAX_INSTANCE_ID_LENGTH).filter(
        lambda s: any(ch not in ALLOWED for ch in s)
    )
)
def test_any_other_character_is_refused(instance_id: str) -> None:
    problem = problem_of(check_instance_id, instance_id)
    assert (problem.status, problem.kind) == (400, "invalid-instance-id")
    assert "ASCII letters" in problem.detail


@pytest.mark.parametrize(
    "instance_id",
    [
        "a/b",
        "a\\b",
        "a#b",
        "a?b",
        "a%2Fb",
        "a&b",
        "a+b",
        "a b",
        "tab\there",
        "new\nline",
        "nul\x00",
        "caf\u00e9",
        "\u0661\u0662",
        "emoji\U0001f600",
    ],
)
def test_url_meaningful_and_non_ascii_characters_are_refused(instance_id: str) -> None:
    assert problem_of(check_instance_id, instance_id).status == 400


@pytest.mark.parametrize(
    "instance_id,reason",
    [
        ("", "empty"),
        ("x" * (MAX_INSTANCE_ID_LENGTH + 1), "101 characters"),
        ("@entity", "starts with @"),
        (".", "dots only"),
        ("..", "dots only"),
    ],
)
def test_structural_rules(instance_id: str, reason: str) -> None:
    problem = problem_of(check_instance_id, instance_id)
    assert problem.status == 400
    assert reason in problem.detail


def test_longest_id_and_inner_at_and_dots_are_fine() -> None:
    for instance_id in [
        "x" * MAX_INSTANCE_ID_LENGTH,
        "job@tenant",
        "a..b",
        "...x",
        "v1.2:nightly~3",
    ]:
        assert check_instance_id(instance_id) == instance_id


# -- function name -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["SingletonActivity", "HttpStartSingle", "Nope", "singletonorchestrator", ""]
)
def test_non_orchestrators_are_404(name: str) -> None:
    problem = problem_of(check_function_name, name, ORCHESTRATORS)
    assert (problem.status, problem.kind) == (404, "unknown-orchestrator")
    assert problem.members["orchestrators"] == ["SingletonOrchestrator"]


def test_orchestrator_name_passes() -> None:
    assert check_function_name("SingletonOrchestrator", ORCHESTRATORS) == "SingletonOrchestrator"


# -- query parameters ----------------------------------------------------------------


def choice(query: str, name: str = "onConflict"):
    request = start_request("SingletonOrchestrator", "job", query=query)
    kind = OnConflict if name == "onConflict" else Reuse
    default = OnConflict.REJECT if name == "onConflict" else Reuse.ALLOW_DUPLICATE
    return read_choice(request, name, kind, default)


def test_absent_parameter_gives_the_default() -> None:
    assert choice("code=abc") is OnConflict.REJECT


@pytest.mark.parametrize(
    "query,expected",
    [
        ("onConflict=useExisting", OnConflict.USE_EXISTING),
        ("onConflict=terminateExisting&code=k", OnConflict.TERMINATE_EXISTING),
        ("onConflict=reject&onConflict=reject", OnConflict.REJECT),
    ],
)
def test_allowed_values(query: str, expected: OnConflict) -> None:
    assert choice(query) is expected


@pytest.mark.parametrize(
    "query",
    [
        "onConflict=Reject",
        "onConflict=",
        "onConflict=replace",
        "onConflict=reject&onConflict=useExisting",
        "onConflict=reject,useExisting",
    ],
)
def test_bad_values_list_the_allowed_ones(query: str) -> None:
    problem = problem_of(choice, query)
    assert (problem.status, problem.kind) == (400, "invalid-query-parameter")
    assert problem.members["allowed"] == [
        "reject",
        "useExisting",
        "terminateExisting",
        "stopExisting",
        "bufferOne",
    ]


def test_reuse_values() -> None:
    assert choice("reuse=rejectDuplicate", "reuse") is Reuse.REJECT_DUPLICATE
    problem = problem_of(choice, "reuse=never", "reuse")
    assert problem.members["allowed"] == [
        "allowDuplicate",
        "allowDuplicateFailedOnly",
        "rejectDuplicate",
    ]


def test_params_fallback_when_the_url_has_no_query() -> None:
    import azure.functions as func

    request = func.HttpRequest(
        "POST", "http://localhost/api/x", body=b"", params={"onConflict": "reject,useExisting"}
    )
    assert (
        problem_of(read_choice, request, "onConflict", OnConflict, OnConflict.REJECT).status == 400
    )


# -- body ----------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b"  \n", b"null"])
def test_empty_or_null_body_is_no_input(raw: bytes) -> None:
    assert read_json_body(raw, 100) is None


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        max_leaves=20,
    )
)
def test_any_json_round_trips(value) -> None:
    raw = json.dumps(value).encode("utf-8")
    assert read_json_body(raw, len(raw)) == value


@pytest.mark.parametrize(
    "raw,words",
    [
        (b"\xff\xfe{}", "UTF-8"),
        (b'{"items": [1,}', "not valid JSON (error at line 1"),
        (b"{'items': []}", "not valid JSON"),
        (b"[NaN]", "NaN or Infinity"),
        (b'{"n": -Infinity}', "NaN or Infinity"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"items": [{"__class__": "X", "__module__": "os", "__data__": {}}]}', "__class__"),
    ],
)
def test_bad_bodies_are_400(raw: bytes, words: str) -> None:
    problem = problem_of(read_json_body, raw, 10**6)
    assert (problem.status, problem.kind) == (400, "invalid-body")
    assert words in problem.detail


@pytest.mark.parametrize(
    "raw,words",
    [
        (b'{"items": [1e400]}', "too large for a double"),
        (b'{"items": [-1E+400]}', "too large for a double"),
        (b"[0.1e9999]", "too large for a double"),
        (b"[" + b"7" * 5000 + b"]", "more than 100 digits"),
        (b"[-" + b"1" * 101 + b"]", "more than 100 digits"),
        (b"[" * 65 + b"]" * 65, "at most 64 levels"),
        (b'{"a":' * 940 + b"1" + b"}" * 940, "at most 64 levels"),
    ],
)
def test_bodies_the_start_could_not_carry_are_400(raw: bytes, words: str) -> None:
    """Valid JSON the SDK could not send, or the orchestrator not read back the same."""
    problem = problem_of(read_json_body, raw, 10**6)
    assert (problem.status, problem.kind) == (400, "invalid-body")
    assert words in problem.detail


def test_the_limits_themselves_are_accepted() -> None:
    assert read_json_body(b"[" * 64 + b"]" * 64, 10**6) is not None
    assert read_json_body(b"[" + b"9" * 100 + b"]", 10**6) == [int("9" * 100)]
    assert read_json_body(b"[1.7e308, 5e-324, -0.0]", 10**6) == [1.7e308, 5e-324, -0.0]


_JSON_TEXT = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**99), max_value=10**99)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
).map(json.dumps) | st.sampled_from(
    ["[1e400]", "[-1e999]", "[" + "9" * 200 + "]", "[" * 70 + "]" * 70]
)


@given(_JSON_TEXT)
def test_every_accepted_body_survives_the_sdk_and_reads_back_the_same(text: str) -> None:
    """What gets past validation, the SDK serializes (input sent JSON-encoded twice)
    and the orchestrator decodes to the same value."""
    raw = text.encode("utf-8")
    try:
        value = read_json_body(raw, len(raw))
    except ProblemError as refused:
        assert refused.problem.status == 400
        return
    sent = df.DurableOrchestrationClient._get_json_input(value)
    if value is None:  # no input: nothing is sent
        assert sent is None
        return
    assert json.loads(json.loads(json.dumps(sent))) == value


def test_body_limit_is_inclusive() -> None:
    raw = json.dumps({"items": ["x" * 50]}).encode()
    assert read_json_body(raw, len(raw)) == {"items": ["x" * 50]}
    problem = problem_of(read_json_body, raw, len(raw) - 1)
    assert (problem.status, problem.members["limitBytes"]) == (413, len(raw) - 1)


# -- the whole request ---------------------------------------------------------------


def test_a_good_request() -> None:
    request = start_request(
        "SingletonOrchestrator",
        "nightly",
        {"items": [1, 2]},
        query="onConflict=useExisting&reuse=rejectDuplicate&code=k",
    )
    parsed = parse_start_request(request, Settings(), CATALOG)
    assert (parsed.function_name, parsed.instance_id, parsed.input) == (
        "SingletonOrchestrator",
        "nightly",
        {"items": [1, 2]},
    )
    assert (parsed.on_conflict, parsed.reuse) == (OnConflict.USE_EXISTING, Reuse.REJECT_DUPLICATE)


def test_app_defaults_apply_when_the_query_is_silent() -> None:
    settings = Settings(on_conflict=OnConflict.USE_EXISTING, reuse=Reuse.REJECT_DUPLICATE)
    parsed = parse_start_request(start_request("SingletonOrchestrator", "n"), settings, CATALOG)
    assert (parsed.on_conflict, parsed.reuse) == (OnConflict.USE_EXISTING, Reuse.REJECT_DUPLICATE)


@pytest.mark.parametrize(
    "body,words",
    [
        ([1, 2], "must be a JSON object"),
        ({"items": "abc"}, "items must be a JSON array"),
        ({"item": []}, "Unknown member(s) in the orchestrator input: item"),
        ({"repeatEverySeconds": 0}, "from 1 to 86400"),
    ],
)
def test_singleton_orchestrator_input_is_checked(body, words: str) -> None:
    request = start_request("SingletonOrchestrator", "n", body)
    problem = problem_of(parse_start_request, request, Settings(), CATALOG)
    assert (problem.status, problem.kind) == (400, "invalid-input")
    assert words in problem.detail


def test_other_orchestrators_take_any_json() -> None:
    request = start_request("OtherOrchestrator", "n", [1, 2])
    parsed = parse_start_request(request, Settings(), Catalog.of(["OtherOrchestrator"]))
    assert parsed.input == [1, 2]
