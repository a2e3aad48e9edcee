"""SingletonOrchestrator driven through the SDK's replay engine with history JSON."""

from __future__ import annotations

import datetime
import json
from typing import Any, Dict, List, Optional
from unittest.mock import ANY

import pytest
from azure.durable_functions.models.actions.ActionType import ActionType

import SingletonActivity
import SingletonOrchestrator
from durable_singleton.job._run import ITEM_STORE, ITEMS_PER_EXECUTION, MAX_RESULTS
from tests.support.history import START, History, iso
from tests.support.job_driver import JobRun, drive, flattened

ACTIVITY = "SingletonActivity"
# The action types, from the SDK's own enum.
CALL_ACTIVITY = ActionType.CALL_ACTIVITY
CONTINUE_AS_NEW = ActionType.CONTINUE_AS_NEW
CREATE_TIMER = ActionType.CREATE_TIMER
WAIT_FOR_EVENT = ActionType.WAIT_FOR_EXTERNAL_EVENT
WHEN_ANY = ActionType.WHEN_ANY


def run(history: History) -> Dict[str, Any]:
    """One episode of the orchestrator, as the host runs it."""
    return json.loads(SingletonOrchestrator.main(history.context()))


def flat_actions(state: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Every action, compound ones opened up, in order."""
    return flattened(state["actions"][0])


def activity_inputs(state: Dict[str, Any]) -> List[Any]:
    return [
        json.loads(a["input"]) for a in flat_actions(state) if a["actionType"] == CALL_ACTIVITY
    ]


def status(
    pass_=1, processed=0, total=0, next_run_at=None, stopping=False, run: Any = ANY, **runs: Any
) -> Dict[str, Any]:
    """The custom status; the run's own id (a replay-safe uuid) matches anything."""
    return {
        "pass": pass_,
        "processed": processed,
        "total": total,
        "nextRunAt": next_run_at,
        "stopping": stopping,
        "run": run,
        "dueAt": runs.get("dueAt"),
    }


def output(
    results: List[Any], total: int, pass_=1, passes_completed=1, stopped=False
) -> Dict[str, Any]:
    """The job's output when every item with a result was processed."""
    return {
        "processed": len(results),
        "total": total,
        "results": results,
        "pass": pass_,
        "passesCompleted": passes_completed,
        "stopped": stopped,
    }


#: The output of a one-item repeating job stopped after its first pass.
STOPPED_AFTER_ONE_PASS = output(["ra"], total=1, stopped=True)


def assert_ends_here(state: Dict[str, Any]) -> None:
    """The job ends with this episode: no timer for a next pass, no continue-as-new."""
    assert not [
        a for a in flat_actions(state) if a["actionType"] in (CREATE_TIMER, CONTINUE_AS_NEW)
    ]


def complete_items(history: History, results: List[Any]) -> None:
    """Schedule and complete one activity per result, an episode each."""
    for result in results:
        sequence = history.scheduled(ACTIVITY)
        history.new_episode().completed(sequence, result)


# -- a job that runs once ------------------------------------------------------------


def test_first_episode_schedules_item_0_and_waits_for_it_or_stop() -> None:
    state = run(History({"items": ["a", "b", "c"]}))
    assert state["isDone"] is False
    [when_any] = state["actions"][0]
    assert when_any["actionType"] == WHEN_ANY
    call, stop = when_any["compoundActions"]
    assert (call["actionType"], call["functionName"]) == (CALL_ACTIVITY, ACTIVITY)
    assert json.loads(call["input"]) == {"item": "a", "index": 0}
    assert (stop["actionType"], stop["externalEventName"]) == (WAIT_FOR_EVENT, "Stop")
    assert state["customStatus"] == status(processed=0, total=3)


def test_each_completion_schedules_the_next_item_in_order() -> None:
    history = History({"items": ["a", {"b": 2}, 3]})
    complete_items(history, ["ra"])
    state = run(history)
    assert activity_inputs(state) == [{"item": "a", "index": 0}, {"item": {"b": 2}, "index": 1}]
    assert state["customStatus"] == status(processed=1, total=3)
    assert state["isDone"] is False

    complete_items(history, ["rb"])
    state = run(history)
    assert activity_inputs(state)[-1] == {"item": 3, "index": 2}
    assert state["customStatus"] == status(processed=2, total=3)


def test_finished_history_gives_output_and_custom_status() -> None:
    history = History({"items": ["a", "b"]})
    complete_items(history, [{"index": 0, "item": "a"}, {"index": 1, "item": "b"}])
    state = run(history)
    assert state["isDone"] is True
    assert state["output"] == output(
        [{"index": 0, "item": "a"}, {"index": 1, "item": "b"}], total=2
    )
    assert state["customStatus"] == status(processed=2, total=2)


@pytest.mark.parametrize("input_", [None, {}, {"items": []}])
def test_no_items_completes_at_once(input_) -> None:
    state = run(History(input_))
    assert state["isDone"] is True
    assert state["output"]["processed"] == 0
    assert state["output"]["results"] == []


@pytest.mark.parametrize(
    "input_,words",
    [
        ([1, 2], "must be a JSON object"),
        ("text", "must be a JSON object"),
        ({"items": 5}, "items must be a JSON array"),
        ({"repeatEverySeconds": 0}, "from 1 to 86400"),
    ],
)
def test_bad_input_fails_the_orchestration_with_a_clear_message(input_, words: str) -> None:
    with pytest.raises(Exception) as raised:
        run(History(input_))
    assert words in str(raised.value)


def test_a_failed_item_fails_the_orchestration() -> None:
    history = History({"items": ["a"]})
    sequence = history.scheduled(ACTIVITY)
    history.new_episode().failed(sequence, "disk full")
    with pytest.raises(Exception) as raised:
        run(history)
    assert "disk full" in str(raised.value)


# -- repeating jobs ------------------------------------------------------------------


def test_timer_is_created_after_a_pass() -> None:
    history = History({"items": ["a"], "repeatEverySeconds": 300})
    complete_items(history, ["ra"])
    state = run(history)
    fire_at = history.now + datetime.timedelta(seconds=300)
    assert state["isDone"] is False
    timer = flat_actions(state)[-1]
    assert timer["actionType"] == CREATE_TIMER
    assert timer["fireAt"] == iso(fire_at)
    assert timer["isCanceled"] is False
    assert state["customStatus"] == status(
        processed=1, total=1, next_run_at=fire_at.isoformat().replace("+00:00", "Z")
    )


def timer_episode(history: History, seconds: int) -> tuple:
    """Record the timer the orchestrator asked for; return its id and fire time."""
    fire_at = history.now + datetime.timedelta(seconds=seconds)
    return history.timer_created(fire_at), fire_at


def test_continue_as_new_after_the_timer_fires() -> None:
    history = History({"items": ["a"], "repeatEverySeconds": 60})
    complete_items(history, ["ra"])
    timer, fire_at = timer_episode(history, 60)
    history.new_episode(60).timer_fired(timer, fire_at)
    state = run(history)
    assert state["isDone"] is True  # this execution ends; the runtime begins the next
    continue_as_new = flat_actions(state)[-1]
    assert continue_as_new["actionType"] == CONTINUE_AS_NEW
    assert json.loads(continue_as_new["input"]) == {
        "items": ["a"],
        "repeatEverySeconds": 60,
        "pass": 2,
        "run": {"id": ANY},
    }
    assert "output" not in state


def test_the_next_pass_shows_its_number() -> None:
    state = run(History({"items": ["a"], "repeatEverySeconds": 60, "pass": 2}))
    assert state["customStatus"] == status(pass_=2, processed=0, total=1)


def test_max_passes_completes_on_the_last_pass() -> None:
    history = History({"items": ["a", "b"], "repeatEverySeconds": 60, "maxPasses": 3, "pass": 3})
    complete_items(history, ["ra", "rb"])
    state = run(history)
    assert state["isDone"] is True
    assert_ends_here(state)
    assert state["output"] == output(["ra", "rb"], total=2, pass_=3, passes_completed=3)


def test_before_max_passes_it_continues() -> None:
    history = History({"items": [], "repeatEverySeconds": 5, "maxPasses": 3, "pass": 2})
    timer, fire_at = timer_episode(history, 5)
    history.new_episode(5).timer_fired(timer, fire_at)
    state = run(history)
    assert json.loads(flat_actions(state)[-1]["input"])["pass"] == 3


# -- graceful stop -------------------------------------------------------------------


def test_stop_while_waiting_completes_at_once_and_cancels_the_timer() -> None:
    history = History({"items": ["a"], "repeatEverySeconds": 3600})
    complete_items(history, ["ra"])
    timer_episode(history, 3600)
    history.new_episode(10).event_raised("Stop")
    state = run(history)
    assert state["isDone"] is True
    timer = [a for a in flat_actions(state) if a["actionType"] == CREATE_TIMER][-1]
    assert timer["isCanceled"] is True
    assert not [a for a in flat_actions(state) if a["actionType"] == CONTINUE_AS_NEW]
    assert state["output"] == STOPPED_AFTER_ONE_PASS
    assert state["customStatus"] == status(processed=1, total=1, stopping=True)


def test_stop_during_a_pass_finishes_the_current_item_first() -> None:
    history = History({"items": ["a", "b", "c"], "repeatEverySeconds": 60})
    complete_items(history, ["ra"])
    item_b = history.scheduled(ACTIVITY)
    history.new_episode().event_raised("Stop")
    state = run(history)
    # Stopping shows at once, but item b is still awaited and nothing new is scheduled.
    assert state["isDone"] is False
    assert state["customStatus"] == status(processed=1, total=3, stopping=True)
    assert [i["index"] for i in activity_inputs(state)] == [0, 1]

    history.new_episode().completed(item_b, "rb")
    state = run(history)
    assert state["isDone"] is True
    assert [i["index"] for i in activity_inputs(state)] == [0, 1]
    assert_ends_here(state)
    assert state["output"] == output(["ra", "rb"], total=3, passes_completed=0, stopped=True)
    assert state["customStatus"] == status(processed=2, total=3, stopping=True)


def test_stop_in_the_same_episode_as_an_items_completion() -> None:
    """History is replayed in order: the completion of item a resumes the job, which
    schedules item b, before the Stop is seen. Item b is then the current item: it
    finishes, and nothing after it starts."""
    history = History({"items": ["a", "b", "c"]})
    item_a = history.scheduled(ACTIVITY)
    history.new_episode().completed(item_a, "ra").event_raised("Stop")
    state = run(history)
    assert state["isDone"] is False
    assert [i["index"] for i in activity_inputs(state)] == [0, 1]
    assert state["customStatus"] == status(processed=1, total=3, stopping=True)

    item_b = history.scheduled(ACTIVITY)
    history.new_episode().completed(item_b, "rb")
    state = run(history)
    assert state["isDone"] is True
    assert state["output"]["stopped"] is True
    assert state["output"]["processed"] == 2


# -- determinism ---------------------------------------------------------------------


def test_same_history_gives_the_same_actions() -> None:
    history = History({"items": ["a", "b"], "repeatEverySeconds": 90})
    complete_items(history, ["ra", "rb"])
    first = SingletonOrchestrator.main(history.context())
    second = SingletonOrchestrator.main(history.context())
    assert first == second


def test_time_comes_from_the_history_not_the_clock() -> None:
    """The timer's fire time follows the history's timestamps, whatever the clock says."""
    late = History(
        {"items": [], "repeatEverySeconds": 10}, now=START + datetime.timedelta(days=400)
    )
    fire_at = [a for a in flat_actions(run(late)) if a["actionType"] == CREATE_TIMER][0]["fireAt"]
    assert fire_at == iso(START + datetime.timedelta(days=400, seconds=10))


# -- the activity --------------------------------------------------------------------


def test_activity_returns_a_result_naming_the_item() -> None:
    assert SingletonActivity.main({"item": {"file": "x.csv"}, "index": 4}) == {
        "index": 4,
        "item": {"file": "x.csv"},
        "status": "processed",
    }


# -- no Stop is ever lost --------------------------------------------------------------


def test_stop_in_the_same_batch_as_the_timer_is_not_lost() -> None:
    """TimerFired and EventRaised(Stop) in one batch: the SDK resumes the job on the
    timer first, and continue-as-new would drop the Stop that follows it."""
    history = History({"items": ["a"], "repeatEverySeconds": 60})
    complete_items(history, ["ra"])
    timer, fire_at = timer_episode(history, 60)
    history.new_episode(60).timer_fired(timer, fire_at).event_raised("Stop")
    state = run(history)
    assert state["isDone"] is True
    assert not [a for a in flat_actions(state) if a["actionType"] == CONTINUE_AS_NEW]
    assert state["output"] == STOPPED_AFTER_ONE_PASS


def staged_history(
    total: int,
    cursor: int,
    stop_with_item: Optional[int] = None,
    results: Optional[List[Any]] = None,
) -> History:
    """An execution of a staged job from ``cursor``: its load, then its items, each
    completed in an episode of its own; a Stop in the batch of item ``stop_with_item``."""
    history = History(
        {
            "continuation": {
                "store": "big/k",
                "total": total,
                "cursor": cursor,
                "results": results or [],
            }
        },
        instance_id="big",
    )
    load = history.scheduled(ITEM_STORE)
    count = min(ITEMS_PER_EXECUTION, total - cursor)
    history.new_episode().completed(load, list(range(cursor, cursor + count)))
    for index in range(cursor, cursor + count):
        sequence = history.scheduled(ACTIVITY)
        history.new_episode().completed(sequence, f"r{index}")
        if index == stop_with_item:
            history.event_raised("Stop")
            break
    return history


def test_a_large_job_continues_as_new_every_so_many_items_with_a_cursor() -> None:
    state = run(staged_history(60, 0))
    [continued] = [a for a in flat_actions(state) if a["actionType"] == CONTINUE_AS_NEW]
    carried = json.loads(continued["input"])["continuation"]
    assert carried["cursor"] == ITEMS_PER_EXECUTION and carried["total"] == 60
    assert carried["results"] == [f"r{i}" for i in range(ITEMS_PER_EXECUTION)]
    assert state["customStatus"] == status(processed=ITEMS_PER_EXECUTION, total=60)


def test_stop_in_the_batch_of_a_continue_as_new_is_not_lost() -> None:
    last = ITEMS_PER_EXECUTION - 1
    history = staged_history(60, 0, stop_with_item=last)
    state = run(history)
    assert not [a for a in flat_actions(state) if a["actionType"] == CONTINUE_AS_NEW]
    [delete] = [
        a
        for a in flat_actions(state)
        if a["actionType"] == CALL_ACTIVITY and a["functionName"] == ITEM_STORE
    ][-1:]
    assert json.loads(delete["input"]) == {"op": "delete", "store": "big/k"}
    sequence = history.scheduled(ITEM_STORE)
    history.new_episode().completed(sequence, None)
    state = run(history)
    assert state["isDone"] is True
    assert state["output"]["stopped"] is True
    assert state["output"]["processed"] == ITEMS_PER_EXECUTION


def test_stop_in_the_batch_that_finishes_staging_is_not_lost() -> None:
    history = History({"items": list(range(ITEMS_PER_EXECUTION + 1))}, instance_id="big")
    stage = history.scheduled(ITEM_STORE)
    history.new_episode().completed(stage, {"store": "big/k"}).event_raised("Stop")
    state = run(history)
    assert not [a for a in flat_actions(state) if a["actionType"] == CONTINUE_AS_NEW]
    assert activity_inputs(state)[-1] == {"op": "delete", "store": "big/k"}


def test_stop_during_a_later_execution_stops_after_the_item_in_flight() -> None:
    history = staged_history(60, ITEMS_PER_EXECUTION, stop_with_item=ITEMS_PER_EXECUTION + 2)
    state = run(history)
    assert state["customStatus"]["stopping"] is True
    assert state["customStatus"]["processed"] == ITEMS_PER_EXECUTION + 3


@pytest.mark.parametrize("at", [0, 1, 2, 3, 20, 27, 28, 29, 40, 55, 56, 57, 58, 59, 100])
def test_stop_at_any_episode_of_a_driven_job_ends_it_stopped(at: int) -> None:
    """Drive a repeating large job and send Stop before episode ``at``: staging, loads,
    items, continue-as-new boundaries, the timer between passes. It always ends."""

    def stop_at(history: History, job: JobRun) -> None:
        if job.episodes == at:
            history.event_raised("Stop")

    job = drive(
        {"items": list(range(60)), "repeatEverySeconds": 1},
        before_episode=stop_at,
        max_episodes=2000,
    )
    assert job.output["stopped"] is True


def test_a_large_job_runs_to_the_end_with_short_histories() -> None:
    job = drive({"items": list(range(130))})
    assert job.output == {
        "processed": 130,
        "total": 130,
        "results": [{"index": i, "item": i, "status": "processed"} for i in range(MAX_RESULTS)],
        "pass": 1,
        "passesCompleted": 1,
        "stopped": False,
    }
    assert job.executions == 1 + 6  # staging, then 130 items 25 at a time
    assert job.longest_history < 8 * ITEMS_PER_EXECUTION  # never the whole pass
    processed = [s["processed"] for s in job.statuses if s]
    assert processed == sorted(processed) and processed[-1] == 130
    assert {s["total"] for s in job.statuses if s} == {130}
