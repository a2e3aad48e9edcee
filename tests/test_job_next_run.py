"""Run once more, in SingletonOrchestrator: NextRun and Stop events through the SDK's
replay engine, in every order and batch they can arrive in."""

from __future__ import annotations

import datetime
import json
from typing import Any, Dict, List, Optional

import pytest

from durable_singleton._job import ITEM_STORE, ITEMS_PER_EXECUTION
from durable_singleton._next_run import (
    RunState,
    RunView,
    iso,
    next_run_event,
    start_member,
    stop_event,
)
from tests.support.history import START, History
from tests.support.job_driver import JobRun, drive
from tests.test_job import (
    ACTIVITY,
    CONTINUE_AS_NEW,
    CREATE_TIMER,
    activity_inputs,
    complete_items,
    flat_actions,
    run,
)


def next_run(request: str, items: List[Any], run_id: Optional[str] = "run-1", due: Any = None):
    return next_run_event(request, {"items": items}, run_id, due)


def started(items: List[Any], run_id: str = "run-1", **member: Any) -> History:
    """A run started by the app for request ``run_id`` (a bufferOne or debounced start)."""
    return History({"items": items, "run": {"id": run_id, **member}})


def continued_with(state: Dict[str, Any]) -> Any:
    [action] = [a for a in flat_actions(state) if a["actionType"] == CONTINUE_AS_NEW]
    return json.loads(action["input"])


def ends_without_next_run(state: Dict[str, Any]) -> None:
    assert state["isDone"] is True
    assert not [a for a in flat_actions(state) if a["actionType"] == CONTINUE_AS_NEW]


# -- during a run ----------------------------------------------------------------------


def test_a_next_run_shows_in_the_status_by_its_size_not_its_content() -> None:
    history = started(["a", "b"])
    complete_items(history, ["ra"])
    history.scheduled(ACTIVITY)
    history.new_episode().event_raised("NextRun", next_run("req-2", ["secret"]))
    state = run(history)
    assert state["isDone"] is False
    custom = state["customStatus"]
    assert custom["run"] == "run-1"
    assert custom["buffered"] == {"request": "req-2", "inputBytes": len('{"items":["secret"]}')}
    assert "secret" not in json.dumps(custom)
    assert RunView.of(custom).took("req-2")


def test_the_next_run_begins_when_the_run_completes_under_the_same_id() -> None:
    history = started(["a", "b"])
    complete_items(history, ["ra"])
    item_b = history.scheduled(ACTIVITY)
    history.new_episode().event_raised("NextRun", next_run("req-2", ["x"]))
    history.new_episode().completed(item_b, "rb")
    state = run(history)
    assert continued_with(state) == {"items": ["x"], "run": {"id": "req-2"}}


def test_a_next_run_in_the_batch_of_the_last_item_is_not_lost() -> None:
    history = started(["a"])
    item_a = history.scheduled(ACTIVITY)
    history.new_episode().completed(item_a, "ra").event_raised("NextRun", next_run("req-2", ["x"]))
    state = run(history)
    assert continued_with(state) == {"items": ["x"], "run": {"id": "req-2"}}


def test_two_next_runs_in_one_batch_latest_wins() -> None:
    history = started(["a", "b"])
    complete_items(history, ["ra"])
    item_b = history.scheduled(ACTIVITY)
    history.new_episode().event_raised("NextRun", next_run("req-2", ["x"])).event_raised(
        "NextRun", next_run("req-3", ["y"])
    )
    state = run(history)
    assert state["customStatus"]["buffered"]["request"] == "req-3"
    history.new_episode().completed(item_b, "rb")
    assert continued_with(run(history)) == {"items": ["y"], "run": {"id": "req-3"}}


def test_two_next_runs_in_the_batch_of_the_last_item_latest_wins() -> None:
    history = started(["a"])
    item_a = history.scheduled(ACTIVITY)
    history.new_episode().completed(item_a, "ra").event_raised(
        "NextRun", next_run("req-2", ["x"])
    ).event_raised("NextRun", next_run("req-3", ["y"]))
    assert continued_with(run(history)) == {"items": ["y"], "run": {"id": "req-3"}}


def test_a_stop_that_saw_the_next_run_drops_it() -> None:
    history = started(["a", "b"])
    complete_items(history, ["ra"])
    item_b = history.scheduled(ACTIVITY)
    history.new_episode().event_raised("NextRun", next_run("req-2", ["x"]))
    history.new_episode().event_raised("Stop", stop_event("run-1", "req-2"))
    state = run(history)
    assert state["customStatus"]["buffered"] is None
    assert state["customStatus"]["dropped"] == "req-2"
    assert state["customStatus"]["stopping"] is True
    history.new_episode().completed(item_b, "rb")
    state = run(history)
    ends_without_next_run(state)
    assert state["output"]["stopped"] is True


def test_a_next_run_after_the_stop_in_one_batch_is_kept() -> None:
    """The Stop saw no next run; the one raised after it came from a later request,
    whose caller was told it would run: it begins once the stopped run has ended."""
    history = started(["a", "b"])
    item_a = history.scheduled(ACTIVITY)
    history.new_episode().completed(item_a, "ra").event_raised(
        "Stop", stop_event("run-1", None)
    ).event_raised("NextRun", next_run("req-2", ["x"]))
    state = run(history)
    assert state["customStatus"]["stopping"] is True
    assert state["customStatus"]["buffered"]["request"] == "req-2"
    item_b = [i for i in activity_inputs(state) if i.get("index") == 1]
    assert item_b  # b was scheduled before the Stop was seen: it finishes
    history.new_episode().completed(history.scheduled(ACTIVITY), "rb")
    assert continued_with(run(history)) == {"items": ["x"], "run": {"id": "req-2"}}


@pytest.mark.parametrize("order", ["stop-first", "next-first"])
def test_a_stop_and_a_next_run_in_the_batch_of_the_last_item(order: str) -> None:
    history = started(["a"])
    item_a = history.scheduled(ACTIVITY)
    history.new_episode().completed(item_a, "ra")
    events = [("Stop", stop_event("run-1", "req-2")), ("NextRun", next_run("req-2", ["x"]))]
    for name, data in events if order == "stop-first" else reversed(events):
        history.event_raised(name, data)
    state = run(history)
    if order == "stop-first":  # the Stop named a run not yet buffered: it is kept
        assert continued_with(state) == {"items": ["x"], "run": {"id": "req-2"}}
    else:  # buffered, then dropped by the Stop that saw it
        ends_without_next_run(state)
        assert state["customStatus"]["dropped"] == "req-2"


def test_a_stop_raised_by_hand_drops_whatever_is_buffered() -> None:
    history = started(["a", "b"])
    complete_items(history, ["ra"])
    item_b = history.scheduled(ACTIVITY)
    history.new_episode().event_raised("NextRun", next_run("req-2", ["x"])).event_raised("Stop")
    history.new_episode().completed(item_b, "rb")
    state = run(history)
    ends_without_next_run(state)
    assert state["output"]["stopped"] is True


def test_an_event_meant_for_an_ended_run_is_ignored() -> None:
    """A NextRun raised into a run that ended before taking it (the app then started
    the input itself) must not make the run it started take the input again."""
    history = started(["a", "b"], run_id="req-2")
    complete_items(history, ["ra"])
    item_b = history.scheduled(ACTIVITY)
    history.new_episode().event_raised(
        "NextRun", next_run("req-2", ["x"], run_id="run-1")
    ).event_raised("NextRun", next_run("req-3", ["y"], run_id="run-1"))
    state = run(history)
    assert state["customStatus"]["buffered"] is None
    history.new_episode().completed(item_b, "rb")
    ends_without_next_run(run(history))


def test_a_stop_meant_for_an_ended_run_is_ignored() -> None:
    history = started(["a", "b"], run_id="req-2")
    complete_items(history, ["ra"])
    history.scheduled(ACTIVITY)
    history.new_episode().event_raised("Stop", stop_event("run-1", None))
    assert run(history)["customStatus"]["stopping"] is False


def test_a_stop_that_dropped_the_next_run_stops_it_if_it_had_begun() -> None:
    """The app saw req-2 buffered and dropped it; the run ended meanwhile and req-2's
    run began: that run is the one the Stop dropped, so it stops."""
    history = started(["a", "b"], run_id="req-2")
    item_a = history.scheduled(ACTIVITY)
    history.new_episode().event_raised("Stop", stop_event("run-1", "req-2"))
    state = run(history)
    assert state["customStatus"]["stopping"] is True
    history.new_episode().completed(item_a, "ra")
    state = run(history)
    ends_without_next_run(state)
    assert state["output"]["processed"] == 1


def test_a_repeating_job_keeps_the_next_run_until_its_last_pass() -> None:
    history = History(
        {"items": ["a"], "repeatEverySeconds": 60, "maxPasses": 2, "run": {"id": "run-1"}}
    )
    item_a = history.scheduled(ACTIVITY)
    history.new_episode().completed(item_a, "ra").event_raised("NextRun", next_run("req-2", ["x"]))
    state = run(history)
    assert [a for a in flat_actions(state) if a["actionType"] == CREATE_TIMER]
    fire_at = history.now + datetime.timedelta(seconds=60)
    timer = history.timer_created(fire_at)
    history.new_episode(60).timer_fired(timer, fire_at)
    second_pass = continued_with(run(history))
    assert second_pass["run"]["buffered"]["request"] == "req-2"
    assert second_pass["pass"] == 2

    last = History(second_pass)
    item = last.scheduled(ACTIVITY)
    last.new_episode().completed(item, "ra")
    assert continued_with(run(last)) == {"items": ["x"], "run": {"id": "req-2"}}


def test_a_large_job_keeps_the_next_run_through_its_chunks() -> None:
    """A next run raised in the first chunk of a staged pass is carried by every
    continue-as-new of the pass and begins only when the pass ends."""
    total = ITEMS_PER_EXECUTION * 2 + 3

    def raise_once(history: History, drove: JobRun) -> None:
        if drove.episodes == 4:
            history.event_raised("NextRun", next_run_event("req-2", {"items": ["x"]}, None, None))

    drove = drive({"items": list(range(total))}, before_episode=raise_once)
    assert drove.output["processed"] == 1  # the last run: the buffered one
    assert drove.output["results"][0]["item"] == "x"
    # Raised during the second execution (the first stages the items): every later
    # execution of the pass carries it.
    carried = drove.inputs[2:-1]
    assert len(carried) == 2
    assert all(i["run"]["buffered"]["request"] == "req-2" for i in carried)
    assert drove.inputs[-1] == {"items": ["x"], "run": {"id": "req-2"}}
    first_pass_items = sum(1 for s in drove.statuses if s and s.get("run") != "req-2")
    assert first_pass_items > total  # every item of the first pass ran before it


# -- debounce --------------------------------------------------------------------------

DUE = START + datetime.timedelta(seconds=30)
LATEST = START + datetime.timedelta(seconds=300)


def debounced() -> History:
    return History({"items": ["a"], "run": start_member("req-1", iso(DUE), iso(LATEST))})


def timers(state: Dict[str, Any]) -> List[Dict[str, Any]]:
    return [a for a in flat_actions(state) if a["actionType"] == CREATE_TIMER]


def test_a_debounced_run_waits_on_a_durable_timer_until_it_is_due() -> None:
    history = debounced()
    state = run(history)
    [timer] = timers(state)
    assert timer["fireAt"].startswith(iso(DUE)[:19])
    assert not activity_inputs(state)
    assert state["customStatus"]["dueAt"] == iso(DUE)
    assert state["customStatus"]["run"] == "req-1"


def test_when_due_the_run_begins_as_a_new_execution_with_its_input() -> None:
    history = debounced()
    timer = history.timer_created(DUE)
    history.new_episode(30).timer_fired(timer, DUE)
    assert continued_with(run(history)) == {"items": ["a"], "run": {"id": "req-1"}}


def test_a_debounced_request_while_waiting_replaces_the_input_and_pushes_the_run_back() -> None:
    history = debounced()
    history.timer_created(DUE)
    later = START + datetime.timedelta(seconds=50)
    history.new_episode(20).event_raised("NextRun", next_run("req-2", ["b"], "req-1", iso(later)))
    state = run(history)
    first, second = timers(state)
    assert first["isCanceled"] is True
    assert second["fireAt"].startswith(iso(later)[:19])
    assert state["customStatus"]["run"] == "req-2"
    assert state["customStatus"]["dueAt"] == iso(later)
    assert state["customStatus"]["buffered"] is None

    timer = history.timer_created(later)
    history.new_episode(30).timer_fired(timer, later)
    assert continued_with(run(history)) == {"items": ["b"], "run": {"id": "req-2"}}


def test_debounce_never_pushes_the_run_past_its_latest_time() -> None:
    history = debounced()
    history.timer_created(DUE)
    too_late = LATEST + datetime.timedelta(seconds=999)
    history.new_episode(20).event_raised(
        "NextRun", next_run("req-2", ["b"], "req-1", iso(too_late))
    )
    state = run(history)
    assert state["customStatus"]["dueAt"] == iso(LATEST)


def test_a_bufferone_request_while_waiting_replaces_the_input_but_not_the_time() -> None:
    history = debounced()
    history.timer_created(DUE)
    history.new_episode(5).event_raised("NextRun", next_run("req-2", ["b"], "req-1"))
    state = run(history)
    assert state["customStatus"]["dueAt"] == iso(DUE)
    assert state["customStatus"]["run"] == "req-2"


def test_a_request_after_the_deadline_in_the_timers_batch_becomes_the_next_run() -> None:
    history = debounced()
    timer = history.timer_created(DUE)
    history.new_episode(30).timer_fired(timer, DUE).event_raised(
        "NextRun", next_run("req-2", ["b"], "req-1", iso(DUE + datetime.timedelta(seconds=30)))
    )
    begins = continued_with(run(history))
    assert begins["items"] == ["a"]
    assert begins["run"] == {
        "id": "req-1",
        "buffered": {"request": "req-2", "input": {"items": ["b"]}},
    }


def test_a_stop_while_waiting_ends_the_job_without_running_it() -> None:
    history = debounced()
    history.timer_created(DUE)
    history.new_episode(5).event_raised("Stop", stop_event("req-1", "req-1"))
    state = run(history)
    ends_without_next_run(state)
    assert state["output"]["stopped"] is True
    assert state["output"]["processed"] == 0
    assert timers(state)[0]["isCanceled"] is True
    assert state["customStatus"]["dropped"] == "req-1"


def test_a_stop_that_saw_an_older_waiting_input_leaves_the_newer_one() -> None:
    history = debounced()
    history.timer_created(DUE)
    history.new_episode(5).event_raised("NextRun", next_run("req-2", ["b"], "req-1"))
    history.new_episode(5).event_raised("Stop", stop_event("req-1", "req-1"))
    state = run(history)
    assert state["isDone"] is False
    assert state["customStatus"]["stopping"] is False
    assert state["customStatus"]["run"] == "req-2"


def test_a_request_after_a_stop_while_waiting_runs_next_at_once() -> None:
    """The Stop dropped the waiting run; a request after it was told it would run."""
    history = debounced()
    history.timer_created(DUE)
    history.new_episode(5).event_raised("Stop", stop_event("req-1", "req-1")).event_raised(
        "NextRun", next_run("req-2", ["b"], "req-1", iso(DUE))
    )
    state = run(history)
    assert continued_with(state) == {"items": ["b"], "run": {"id": "req-2"}}
    assert state["customStatus"]["dropped"] == "req-1"


def test_a_stop_in_the_batch_of_the_due_time_ends_it_unrun() -> None:
    history = debounced()
    timer = history.timer_created(DUE)
    history.new_episode(30).timer_fired(timer, DUE).event_raised(
        "Stop", stop_event("req-1", "req-1")
    )
    state = run(history)
    ends_without_next_run(state)
    assert state["output"]["stopped"] is True


# -- the rules, as pure functions ---------------------------------------------------------


def test_run_state_ignores_data_that_is_not_the_apps() -> None:
    state = RunState("run-1")
    assert state.with_next(None) == state
    assert state.with_next({"input": 1}) == state


def test_run_view_reads_any_custom_status() -> None:
    assert RunView.of(None) == RunView(None, None, None)
    assert RunView.of({"run": 3, "buffered": "x"}) == RunView(None, None, None)
    view = RunView.of({"run": "a", "buffered": {"request": "b"}, "dropped": "c"})
    assert view.took("a") and view.took("b") and not view.took("c")
    assert view.dropped == "c"


def test_the_item_store_is_deleted_before_the_next_run_begins() -> None:
    history = History(
        {"continuation": {"store": "s", "total": 1, "cursor": 0}, "run": {"id": "r"}}
    )
    load = history.scheduled(ITEM_STORE)
    history.new_episode().completed(load, ["a"])
    item = history.scheduled(ACTIVITY)
    history.new_episode().completed(item, "ra").event_raised("NextRun", next_run("q", ["x"], "r"))
    state = run(history)
    assert activity_inputs(state)[-1] == {"op": "delete", "store": "s"}
    assert state["isDone"] is False
    delete = history.scheduled(ITEM_STORE)
    history.new_episode().completed(delete, None)
    assert continued_with(run(history)) == {"items": ["x"], "run": {"id": "q"}}
