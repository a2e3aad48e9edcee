"""The orchestrator input rules, shared by HttpStartSingle and SingletonOrchestrator."""

from __future__ import annotations

import pytest

from durable_singleton._next_run import RunState
from durable_singleton.job._run import InvalidJobInput, JobInput, parse_job_input


@pytest.mark.parametrize(
    "value,expected",
    [
        (None, JobInput([])),
        ({}, JobInput([])),
        ({"items": [1, "two", {"three": 3}, None]}, JobInput([1, "two", {"three": 3}, None])),
        ({"items": [], "repeatEverySeconds": 1}, JobInput([], 1)),
        ({"items": [1], "repeatEverySeconds": 86400, "maxPasses": 3}, JobInput([1], 86400, 3)),
        ({"repeatEverySeconds": 5, "maxPasses": 3, "pass": 3}, JobInput([], 5, 3, 3)),
    ],
)
def test_valid_inputs(value, expected: JobInput) -> None:
    assert parse_job_input(value) == expected


@pytest.mark.parametrize(
    "value,words",
    [
        ([], "must be a JSON object"),
        ("items", "not a string"),
        (7, "not a number"),
        ({"items": {"a": 1}}, "items must be a JSON array, not an object"),
        ({"items": None}, "items must be a JSON array, not null"),
        ({"repeatEverySeconds": 0}, "repeatEverySeconds must be from 1 to 86400; got 0"),
        ({"repeatEverySeconds": 86401}, "from 1 to 86400"),
        ({"repeatEverySeconds": 1.5}, "must be a whole number, not a number"),
        ({"repeatEverySeconds": "60"}, "must be a whole number, not a string"),
        ({"repeatEverySeconds": True}, "must be a whole number, not a boolean"),
        ({"repeatEverySeconds": 5, "maxPasses": 0}, "maxPasses must be at least 1"),
        ({"maxPasses": 2}, "maxPasses needs repeatEverySeconds"),
        ({"repeatEverySeconds": 5, "maxPasses": 2, "pass": 3}, "pass must not be greater"),
        ({"items": [], "every": 5}, "Unknown member(s) in the orchestrator input: every"),
    ],
)
def test_invalid_inputs(value, words: str) -> None:
    with pytest.raises(InvalidJobInput) as raised:
        parse_job_input(value)
    assert words in str(raised.value)


def test_next_pass_keeps_the_job_and_counts_on() -> None:
    job = parse_job_input({"items": ["a"], "repeatEverySeconds": 30, "maxPasses": 4, "pass": 2})
    run = RunState("run-1")
    assert job.next_pass(run) == {
        "items": ["a"],
        "repeatEverySeconds": 30,
        "maxPasses": 4,
        "pass": 3,
        "run": {"id": "run-1"},
    }
    assert parse_job_input(job.next_pass(run), internal=True).pass_number == 3


@pytest.mark.parametrize(
    "value,last",
    [
        ({"items": []}, True),
        ({"repeatEverySeconds": 5}, False),
        ({"repeatEverySeconds": 5, "maxPasses": 2}, False),
        ({"repeatEverySeconds": 5, "maxPasses": 2, "pass": 2}, True),
    ],
)
def test_last_pass(value, last: bool) -> None:
    assert parse_job_input(value).is_last_pass is last
