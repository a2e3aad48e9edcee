"""Jobs in parallel: SingletonOrchestrator with ``parallelism`` through the SDK's replay
engine: fan-out/fan-in, the order of results, chunks, Stop and next runs."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest

from durable_singleton._next_run import Channel, Pending, start_member
from durable_singleton.job._run import (
    ITEM_STORE,
    ITEMS_PER_EXECUTION,
    MAX_RESULTS,
    WINDOWS_PER_EXECUTION,
    InvalidJobInput,
    parse_job_input,
)
from tests.support.history import History
from tests.support.job_driver import MemoryChannels, drive
from tests.test_job import ACTIVITY, CALL_ACTIVITY, activity_inputs, flat_actions, run


def item_calls(state: Dict[str, Any]) -> List[int]:
    return [
        json.loads(a["input"])["index"]
        for a in flat_actions(state)
        if a["actionType"] == CALL_ACTIVITY and a["functionName"] == ACTIVITY
    ]


def test_up_to_parallelism_items_start_at_once() -> None:
    state = run(History({"items": list("abcdefgh"), "parallelism": 3}))
    assert item_calls(state) == [0, 1, 2]
    assert state["isDone"] is False


def test_a_completed_item_makes_room_for_the_next_and_results_keep_their_order() -> None:
    history = History({"items": list("abcd"), "parallelism": 2})
    first, second = history.scheduled(ACTIVITY), history.scheduled(ACTIVITY)
    history.new_episode().completed(second, "rb")  # the second finishes first
    state = run(history)
    assert item_calls(state) == [0, 1, 2]
    assert state["customStatus"]["processed"] == 1
    third = history.scheduled(ACTIVITY)
    history.new_episode().completed(first, "ra").completed(third, "rc")
    state = run(history)
    assert item_calls(state) == [0, 1, 2, 3]
    fourth = history.scheduled(ACTIVITY)
    history.new_episode().completed(fourth, "rd")
    state = run(history)
    assert state["isDone"] is True
    assert state["output"]["results"] == ["ra", "rb", "rc", "rd"]
    assert state["output"]["processed"] == 4


def test_after_a_stop_no_item_starts_and_the_ones_in_flight_finish() -> None:
    history = History({"items": list("abcdef"), "parallelism": 3})
    a, b, c = (history.scheduled(ACTIVITY) for _ in range(3))
    history.new_episode().completed(a, "ra").event_raised("Stop")
    state = run(history)
    started = item_calls(state)
    assert started == [0, 1, 2, 3]  # d started with a's completion, before the Stop was seen
    d = history.scheduled(ACTIVITY)
    history.new_episode().completed(b, "rb").completed(c, "rc")
    state = run(history)
    assert item_calls(state) == started and state["isDone"] is False  # d is in flight
    history.new_episode().completed(d, "rd")
    state = run(history)
    assert state["isDone"] is True
    assert state["output"]["stopped"] is True
    assert state["output"]["processed"] == 4
    assert state["output"]["results"] == ["ra", "rb", "rc", "rd"]


def test_a_failed_item_fails_the_orchestration() -> None:
    history = History({"items": list("abc"), "parallelism": 3})
    a, b, _ = (history.scheduled(ACTIVITY) for _ in range(3))
    history.new_episode().completed(a, "ra").failed(b, "boom")
    with pytest.raises(Exception, match="boom"):
        run(history)


@pytest.mark.parametrize("parallelism", [1, 8, 32, 64])
def test_a_large_job_in_parallel_keeps_every_result_in_order(parallelism: int) -> None:
    total = max(ITEMS_PER_EXECUTION, WINDOWS_PER_EXECUTION * parallelism) * 2 + 7
    drove = drive({"items": list(range(total)), "parallelism": parallelism})
    output = drove.output
    assert (output["processed"], output["total"]) == (total, total)
    assert [r["index"] for r in output["results"]] == list(range(min(total, MAX_RESULTS)))
    per_execution = max(ITEMS_PER_EXECUTION, WINDOWS_PER_EXECUTION * parallelism)
    chunks = -(-total // per_execution)
    assert drove.executions == 1 + chunks  # staging, then one execution per chunk
    assert drove.activity_calls == total + 2 + chunks  # each item once; stage, loads, delete


def test_a_next_run_waits_for_the_parallel_pass_to_end() -> None:
    channels = MemoryChannels()
    channels.channels[("hub", "big-job")] = Channel("r", next=Pending("req-2", {"items": ["x"]}))
    job = {"items": list(range(300)), "parallelism": 16, "run": start_member("r", "hub")}
    drove = drive(job, channels=channels)
    assert drove.output["results"][0]["item"] == "x"
    first_pass = [s for s in drove.statuses if s and s.get("run") != "req-2"]
    assert max(s["processed"] for s in first_pass) == 300


def test_the_history_of_an_execution_stays_bounded() -> None:
    drove = drive({"items": list(range(2000)), "parallelism": 32})
    items = WINDOWS_PER_EXECUTION * 32
    # Two events per item, and four per episode (about one episode per window).
    assert drove.longest_history <= 2 * items + 4 * (WINDOWS_PER_EXECUTION + 3) + 10


@pytest.mark.parametrize("value", [0, 65, "4", 2.0, True])
def test_parallelism_is_a_whole_number_from_1_to_64(value: Any) -> None:
    with pytest.raises(InvalidJobInput, match="parallelism"):
        parse_job_input({"items": [], "parallelism": value})


def test_parallelism_is_carried_to_the_next_pass() -> None:
    job = parse_job_input({"items": ["a"], "parallelism": 4, "repeatEverySeconds": 5})
    from durable_singleton._next_run import RunState

    assert job.next_pass(RunState("r"))["parallelism"] == 4


def test_staging_with_parallelism_stages_once_then_loads_each_chunk() -> None:
    history = History({"items": list(range(ITEMS_PER_EXECUTION * 20)), "parallelism": 8})
    state = run(history)
    assert activity_inputs(state)[0]["op"] == "stage"
    assert [
        a["functionName"] for a in flat_actions(state) if a["actionType"] == CALL_ACTIVITY
    ] == [ITEM_STORE]
