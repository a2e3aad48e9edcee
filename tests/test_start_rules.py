"""One rule for a start, whichever door it comes through: the HTTP route, the library's
``SingletonApp.start`` and a schedule's tick all build their request with the one checked
constructor (``_request.checked_start``), so each row of this table is answered alike by
the three, and nothing is called."""

from __future__ import annotations

import json
from typing import Any, Optional

import pytest

from durable_singleton import Catalog, OnConflict, Overlap, Reuse, SingletonApp
from durable_singleton._settings import Schedule
from durable_singleton._timer_start import schedule_request
from durable_singleton.errors import ConfigurationError, ProblemError
from durable_singleton.job import parse_job_input
from tests.support.app import root_of
from tests.support.requests import start_request

JOB = "SingletonOrchestrator"
PLAIN = "Plain"

#: (what breaks a rule, orchestrator, instance id, input, onConflict, debounceSeconds,
#: the problem every door answers, the schedule's overlap for it and the setting the tick
#: names, or None when a schedule cannot ask for it).
RULES = [
    (
        "unknown orchestrator",
        "Nope",
        "x",
        None,
        None,
        None,
        "unknown-orchestrator",
        ("skip", "ORCHESTRATOR"),
    ),
    (
        "bad instance id",
        JOB,
        "@x",
        None,
        None,
        None,
        "invalid-instance-id",
        ("skip", "INSTANCE_ID"),
    ),
    ("input the job refuses", JOB, "x", [1], None, None, "invalid-input", ("skip", "INPUT")),
    (
        "input of a next-run orchestrator with run",
        JOB,
        "x",
        {"run": 1},
        None,
        None,
        "invalid-input",
        ("skip", "INPUT"),
    ),
    (
        "debounce with onConflict=reject",
        JOB,
        "x",
        None,
        OnConflict.REJECT,
        5,
        "conflicting-parameters",
        None,
    ),
    ("debounce out of range", JOB, "x", None, None, 0, "invalid-query-parameter", None),
    (
        "graceful stop of one that takes none",
        PLAIN,
        "x",
        None,
        OnConflict.STOP_EXISTING,
        None,
        "stop-not-supported",
        ("cancelOther", "OVERLAP"),
    ),
    (
        "bufferOne for one without next runs",
        PLAIN,
        "x",
        None,
        OnConflict.BUFFER_ONE,
        None,
        "next-run-not-supported",
        ("bufferOne", "OVERLAP"),
    ),
]


@pytest.fixture
async def app(app_env: str) -> Any:
    catalog = Catalog.of({JOB: parse_job_input, PLAIN: None}, next_runs=[JOB], stops=[JOB])
    made = SingletonApp(catalog)
    yield made
    await made.close()


def query(on_conflict: Optional[OnConflict], debounce: Optional[int]) -> str:
    parts = []
    if on_conflict is not None:
        parts.append(f"onConflict={on_conflict.value}")
    if debounce is not None:
        parts.append(f"debounceSeconds={debounce}")
    return "&".join(parts)


@pytest.mark.parametrize("rule", RULES, ids=[r[0] for r in RULES])
async def test_the_route_answers_the_rule(app, durable, rule) -> None:
    _, function, instance_id, input_, on_conflict, debounce, kind, _ = rule
    request = start_request(function, instance_id, input_, query(on_conflict, debounce))
    response = await app.http_start(request, durable.starter())
    assert json.loads(response.get_body())["type"].endswith(f":{kind}")
    assert sum(durable.calls.values()) == 0


@pytest.mark.parametrize("rule", RULES, ids=[r[0] for r in RULES])
async def test_the_library_answers_the_rule(app, durable, rule) -> None:
    _, function, instance_id, input_, on_conflict, debounce, kind, _ = rule
    with pytest.raises(ProblemError) as refused:
        await app.client(durable.starter()).start(
            function,
            instance_id,
            input_,
            on_conflict=on_conflict,
            debounce_seconds=debounce,
        )
    assert refused.value.problem.kind == kind
    assert sum(durable.calls.values()) == 0


@pytest.mark.parametrize("rule", [r for r in RULES if r[7]], ids=[r[0] for r in RULES if r[7]])
async def test_a_schedule_names_the_setting_that_breaks_the_rule(app, rule) -> None:
    _, function, instance_id, input_, _, _, _, (overlap, setting) = rule
    schedule = Schedule(
        "NIGHTLY",
        True,
        function,
        instance_id,
        json.dumps(input_),
        Overlap(overlap),
        Reuse.ALLOW_DUPLICATE,
    )
    with pytest.raises(ConfigurationError) as wrong:
        schedule_request(schedule, root_of(app))
    assert f"App setting NIGHTLY_{setting} is not valid" in str(wrong.value)
