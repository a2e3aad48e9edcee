"""Run once more, in SingletonOrchestrator: its calls to SingletonNextRun and its Stop
events through the SDK's replay engine, in every order and batch they can arrive in; and
the channel's rules as pure functions."""

from __future__ import annotations

import datetime
from typing import Any, Dict, List

import pytest

from durable_singleton._next_run import (
    NEXT_RUN_ACTIVITY,
    Channel,
    Closed,
    Pending,
    RunState,
    Wait,
    begin,
    close,
    confirmed,
    iso,
    offer,
    opened,
    shown_run,
    start_member,
    stop,
    stop_event,
    take,
    takes_requests,
)
from durable_singleton.job._run import ITEM_STORE, ITEMS_PER_EXECUTION
from tests.support.history import START, History
from tests.support.job_driver import MemoryChannels, continued_with, drive, next_run_calls
from tests.support.job_driver import take_answered as answer_take
from tests.test_job import (
    ACTIVITY,
    CONTINUE_AS_NEW,
    CREATE_TIMER,
    activity_inputs,
    complete_items,
    flat_actions,
    run,
)

HUB = "hub"


def started(items: List[Any], run_id: str = "run-1", **member: Any) -> History:
    """A run the app started (its input names the run and the channel's task hub)."""
    return History({"items": items, "run": {"id": run_id, "hub": HUB, **member}})


def ends_without_next_run(state: Dict[str, Any]) -> None:
    assert state["isDone"] is True
    assert not [a for a in flat_actions(state) if a["actionType"] == CONTINUE_AS_NEW]


def take_answered(history: History, answer: Any) -> Dict[str, Any]:
    """The run's take was scheduled; SingletonNextRun answers ``answer``."""
    return answer_take(history, answer, run)


# -- at the end of a run ---------------------------------------------------------------


def test_at_its_end_the_run_takes_its_next_run_from_the_channel() -> None:
    history = started(["a"])
    complete_items(history, ["ra"])
    state = run(history)
    assert state["isDone"] is False
    assert next_run_calls(state) == [
        {"op": "take", "run": "run-1", "hub": HUB, "instanceId": history.instance_id}
    ]
    state = take_answered(history, {"request": "req-2", "input": {"items": ["x"]}})
    assert continued_with(state) == {"items": ["x"], "run": {"id": "req-2", "hub": HUB}}


def test_with_no_next_run_the_job_completes() -> None:
    history = started(["a"])
    complete_items(history, ["ra"])
    state = take_answered(history, None)
    ends_without_next_run(state)
    assert state["output"]["processed"] == 1


def test_a_job_the_app_did_not_start_takes_nothing() -> None:
    """No channel to take from: its input names no task hub."""
    history = History({"items": ["a"]})
    complete_items(history, ["ra"])
    state = run(history)
    ends_without_next_run(state)
    assert next_run_calls(state) == []


def test_a_stop_for_the_run_taken_arriving_with_the_take_is_carried() -> None:
    """The app's Stop saw req-2 already taken (the channel named it), and reached this
    execution before it ended: req-2 begins stopped."""
    history = started(["a"])
    complete_items(history, ["ra"])
    run(history)
    sequence = history.scheduled(NEXT_RUN_ACTIVITY)
    history.new_episode().event_raised("Stop", stop_event("req-2"))
    history.completed(sequence, {"request": "req-2", "input": {"items": ["x"]}})
    state = run(history)
    assert continued_with(state)["run"] == {"id": "req-2", "hub": HUB, "stopping": True}


def test_a_stop_for_this_run_is_not_carried_to_the_next() -> None:
    history = started(["a", "b"])
    complete_items(history, ["ra"])
    item_b = history.scheduled(ACTIVITY)
    history.new_episode().event_raised("Stop", stop_event("run-1"))
    state = run(history)
    assert state["customStatus"]["stopping"] is True
    history.new_episode().completed(item_b, "rb")
    state = run(history)
    assert next_run_calls(state)[0]["op"] == "take"  # a later request's run may follow
    state = take_answered(history, {"request": "req-3", "input": {"items": ["y"]}})
    assert continued_with(state)["run"] == {"id": "req-3", "hub": HUB}


def test_a_run_that_begins_stopping_runs_no_item_and_ends() -> None:
    history = started(["a", "b"], run_id="req-2", stopping=True)
    state = run(history)
    assert activity_inputs(state) == []
    assert next_run_calls(state)[0] == {
        "op": "take",
        "run": "req-2",
        "hub": HUB,
        "instanceId": history.instance_id,
    }
    state = take_answered(history, None)
    ends_without_next_run(state)
    assert state["output"]["stopped"] is True and state["output"]["processed"] == 0


def test_a_stop_meant_for_another_run_is_ignored() -> None:
    history = started(["a", "b"], run_id="req-2")
    complete_items(history, ["ra"])
    history.scheduled(ACTIVITY)
    history.new_episode().event_raised("Stop", stop_event("run-1"))
    assert run(history)["customStatus"]["stopping"] is False


def test_a_stop_raised_by_hand_stops_the_run_and_the_next_one() -> None:
    history = started(["a", "b"])
    complete_items(history, ["ra"])
    item_b = history.scheduled(ACTIVITY)
    history.new_episode().event_raised("Stop")
    history.new_episode().completed(item_b, "rb")
    run(history)
    state = take_answered(history, {"request": "req-2", "input": {"items": ["x"]}})
    assert continued_with(state)["run"]["stopping"] is True


def test_the_status_shows_the_run_not_any_next_run() -> None:
    state = run(started(["a"]))
    assert state["customStatus"]["run"] == "run-1"
    assert "buffered" not in state["customStatus"]


def test_the_item_store_is_deleted_before_the_next_run_is_taken() -> None:
    history = History(
        {"continuation": {"store": "s", "total": 1, "cursor": 0}, "run": {"id": "r", "hub": HUB}}
    )
    load = history.scheduled(ITEM_STORE)
    history.new_episode().completed(load, ["a"])
    item = history.scheduled(ACTIVITY)
    history.new_episode().completed(item, "ra")
    state = run(history)
    assert activity_inputs(state)[-1] == {"op": "delete", "store": "s"}
    delete = history.scheduled(ITEM_STORE)
    history.new_episode().completed(delete, None)
    state = take_answered(history, {"request": "q", "input": {"items": ["x"]}})
    assert continued_with(state) == {"items": ["x"], "run": {"id": "q", "hub": HUB}}


# -- through whole runs, with the activity's own code --------------------------------------


def test_a_repeating_job_takes_its_next_run_only_after_its_last_pass() -> None:
    channels = MemoryChannels()
    channels.channels[(HUB, "big-job")] = Channel("run-1", next=Pending("req-2", {"items": ["x"]}))
    drove = drive(
        {
            "items": ["a"],
            "repeatEverySeconds": 60,
            "maxPasses": 2,
            "run": start_member("run-1", HUB),
        },
        channels=channels,
    )
    assert [i.get("pass") for i in drove.inputs[:2]] == [None, 2]
    assert drove.inputs[-1] == {"items": ["x"], "run": {"id": "req-2", "hub": HUB}}
    assert drove.output["results"][0]["item"] == "x"
    assert channels.channels[(HUB, "big-job")] == Channel("req-2", ended=True)


def test_a_large_job_takes_its_next_run_only_when_the_pass_ends() -> None:
    total = ITEMS_PER_EXECUTION * 2 + 3
    channels = MemoryChannels()
    channels.channels[(HUB, "big-job")] = Channel("run-1", next=Pending("req-2", {"items": ["x"]}))
    drove = drive(
        {"items": list(range(total)), "run": start_member("run-1", HUB)}, channels=channels
    )
    assert drove.output["processed"] == 1  # the last run: the next one
    assert drove.inputs[-1] == {"items": ["x"], "run": {"id": "req-2", "hub": HUB}}
    first_pass = [s for s in drove.statuses if s and s.get("run") == "run-1"]
    assert max(s["processed"] for s in first_pass) == total


def test_a_request_during_the_run_is_its_next_run() -> None:
    """A request writes the channel while the run works; the run's end finds it."""
    channels = MemoryChannels()
    channels.channels[(HUB, "big-job")] = Channel("run-1")

    def a_request_arrives(store: MemoryChannels) -> None:
        current = store.channels[(HUB, "big-job")]
        if current.run == "run-1" and not current.ended and current.next is None:
            store.channels[(HUB, "big-job")] = offer(
                current, "req-2", {"items": ["x"]}, None
            ).channel

    channels.before_change = a_request_arrives
    drove = drive({"items": ["a", "b"], "run": start_member("run-1", HUB)}, channels=channels)
    assert [i["items"] for i in drove.inputs] == [["a", "b"], ["x"]]


# -- debounce --------------------------------------------------------------------------

DUE = START + datetime.timedelta(seconds=30)
LATEST = START + datetime.timedelta(seconds=300)


def debounced() -> History:
    return History({"items": ["a"], "run": start_member("req-1", HUB, iso(DUE), iso(LATEST))})


def timers(state: Dict[str, Any]) -> List[Dict[str, Any]]:
    return [a for a in flat_actions(state) if a["actionType"] == CREATE_TIMER]


def test_a_debounced_run_waits_on_a_durable_timer_until_it_is_due() -> None:
    history = debounced()
    state = run(history)
    [timer] = timers(state)
    assert timer["fireAt"].startswith(iso(DUE)[:19])
    assert not activity_inputs(state) and not next_run_calls(state)
    assert state["customStatus"]["dueAt"] == iso(DUE)
    assert state["customStatus"]["run"] == "req-1"


def due_fired(history: History) -> Dict[str, Any]:
    timer = history.timer_created(DUE)
    history.new_episode(30).timer_fired(timer, DUE)
    return run(history)


def test_when_due_it_asks_the_channel_and_begins_with_the_latest_input() -> None:
    history = debounced()
    state = due_fired(history)
    assert next_run_calls(state) == [
        {"op": "begin", "hub": HUB, "instanceId": history.instance_id}
    ]
    begin_ = history.scheduled(NEXT_RUN_ACTIVITY)
    history.new_episode().completed(
        begin_, {"begin": {"request": "req-3", "input": {"items": ["c"]}}}
    )
    assert continued_with(run(history)) == {"items": ["c"], "run": {"id": "req-3", "hub": HUB}}


def test_when_the_channel_moved_the_due_time_it_waits_again() -> None:
    history = debounced()
    due_fired(history)
    later = DUE + datetime.timedelta(seconds=20)
    begin_ = history.scheduled(NEXT_RUN_ACTIVITY)
    history.new_episode().completed(begin_, {"wait": iso(later)})
    state = run(history)
    assert timers(state)[-1]["fireAt"].startswith(iso(later)[:19])
    assert state["customStatus"]["dueAt"] == iso(later)
    assert state["isDone"] is False


def test_when_a_stop_dropped_it_before_it_began_it_ends_through_the_channel() -> None:
    history = debounced()
    due_fired(history)
    begin_ = history.scheduled(NEXT_RUN_ACTIVITY)
    history.new_episode().completed(begin_, {})
    state = run(history)
    assert next_run_calls(state)[-1]["op"] == "take"
    state = take_answered(history, None)
    ends_without_next_run(state)
    assert state["output"]["stopped"] is True and state["output"]["processed"] == 0


def test_a_stop_while_waiting_ends_it_unrun() -> None:
    history = debounced()
    history.timer_created(DUE)
    history.new_episode(5).event_raised("Stop", stop_event("req-7"))  # any: it is the first
    state = run(history)
    assert timers(state)[0]["isCanceled"] is True
    assert next_run_calls(state) == [
        {"op": "take", "run": "req-1", "hub": HUB, "instanceId": history.instance_id}
    ]
    state = take_answered(history, {"request": "req-8", "input": {"items": ["z"]}})
    assert continued_with(state) == {"items": ["z"], "run": {"id": "req-8", "hub": HUB}}


@pytest.mark.parametrize("began", [False, True])
def test_a_stop_in_the_batch_of_the_due_time_is_decided_by_the_channel(began: bool) -> None:
    """The channel decided the race: the Stop dropped the waiting run (it ends unrun),
    or it began first (the Stop names it: it begins stopping)."""
    history = debounced()
    timer = history.timer_created(DUE)
    history.new_episode(30).timer_fired(timer, DUE).event_raised("Stop", stop_event("req-1"))
    state = run(history)
    assert [c["op"] for c in next_run_calls(state)] == ["begin"]
    begin_ = history.scheduled(NEXT_RUN_ACTIVITY)
    answer = {"begin": {"request": "req-1", "input": {"items": ["a"]}}} if began else {}
    history.new_episode().completed(begin_, answer)
    state = run(history)
    if began:
        assert continued_with(state)["run"] == {"id": "req-1", "hub": HUB, "stopping": True}
    else:
        assert [c["op"] for c in next_run_calls(state)] == ["begin", "take"]


# -- the channel's rules, as pure functions -------------------------------------------------

NOW = START


def test_a_retried_take_answers_as_the_first_did() -> None:
    channel = Channel("run-1", next=Pending("req-2", {"n": 2}))
    written, taken = take(channel, "run-1")
    assert written == Channel("req-2", {"n": 2}, after="run-1") and taken == Pending(
        "req-2", {"n": 2}
    )
    assert take(written, "run-1") == (None, taken)  # the retry writes nothing
    ended, none = take(written, "req-2")
    assert ended == Channel("req-2", ended=True) and none is None
    assert take(ended, "req-2") == (None, None)


def test_a_take_with_no_channel_closes_one() -> None:
    assert take(None, "run-1") == (Channel("run-1", ended=True), None)


def test_offers_to_a_waiting_run_replace_it_and_move_it_never_past_its_latest() -> None:
    waiting = opened(None, "req-1", {"n": 1}, iso(DUE), iso(LATEST))
    moved = offer(waiting, "req-2", {"n": 2}, iso(DUE + datetime.timedelta(seconds=5)))
    assert (moved.kind, moved.replaced, moved.channel.run) == ("debounced", "req-1", "req-2")
    capped = offer(moved.channel, "req-3", {"n": 3}, iso(LATEST + datetime.timedelta(days=1)))
    assert capped.due_at == iso(LATEST)
    kept = offer(moved.channel, "req-4", {"n": 4}, None)  # bufferOne: the time stays
    assert kept.due_at == moved.due_at


def test_begin_waits_begins_and_answers_a_retry_the_same() -> None:
    waiting = opened(None, "req-1", {"n": 1}, iso(DUE), iso(LATEST))
    assert begin(waiting, DUE - datetime.timedelta(seconds=1)) == (None, Wait(iso(DUE)))
    began, what = begin(waiting, DUE)
    assert what == Pending("req-1", {"n": 1}) and began is not None and not began.waiting
    assert begin(began, DUE) == (None, what)


def test_a_stop_drops_what_it_finds_and_nothing_later() -> None:
    running = Channel("run-1", next=Pending("req-2", 2))
    stopped, decided = stop(running)
    assert decided.run == "run-1" and decided.dropped == "req-2"
    assert stopped is not None and stopped.next is None
    later = offer(stopped, "req-3", 3, None)  # a request after it: the next run again
    assert take(later.channel, "run-1")[1] == Pending("req-3", 3)
    waiting = opened(None, "req-1", 1, iso(DUE), iso(LATEST))
    dropped, decided = stop(waiting)
    assert decided.dropped == "req-1" and begin(dropped, DUE) == (None, None)
    assert offer(dropped, "req-5", 5, iso(DUE)).kind == "buffered"  # runs after, at once


def test_a_stop_after_the_take_names_the_run_taken_and_drops_nothing() -> None:
    taken, _ = take(Channel("run-1", next=Pending("req-2", 2)), "run-1")
    decided = stop(taken)[1]
    assert (decided.run, decided.dropped) == ("req-2", None)


def test_close_ends_the_channel_and_drops_the_next_run() -> None:
    closed, removed = close(Channel("run-1", next=Pending("req-2", 2)))
    assert removed == Closed("req-2") and closed is not None and closed.ended
    assert closed.next is None and close(closed) == (None, Closed(None))


def test_a_run_handed_over_is_dropped_by_a_terminate_only_if_it_never_began() -> None:
    """Taken at run-1's end (or begun after its wait), req-2 may still never begin: the
    instance's status after the end tells (it shows the run it ended in)."""
    taken, _ = take(Channel("run-1", next=Pending("req-2", 2)), "run-1")
    _, removed = close(taken)
    assert removed == Closed(None, handed="req-2")
    assert removed.after_end("run-1") == "req-2"  # ended in run-1: req-2 never began
    assert removed.after_end("req-2") is None  # it began, and was terminated
    assert removed.after_end(None) is None  # the status shows no run: claim nothing
    began, _ = begin(
        offer(opened(None, "req-1", 1, iso(DUE), iso(LATEST)), "req-3", 3, None).channel, DUE
    )
    assert close(began)[1] == Closed(None, handed="req-3")
    assert close(Channel("run-1"))[1] == Closed(None)  # started by the app: never handed


def test_a_start_keeps_a_next_run_its_last_instance_did_not_take() -> None:
    left = Channel("run-1", next=Pending("req-2", 2))
    assert opened(left, "req-9").next == Pending("req-2", 2)
    assert opened(Channel("run-1", ended=True), "req-9") == Channel("req-9", starting=True)


def test_a_channel_opened_for_a_start_takes_requests_only_once_the_start_is_known() -> None:
    """Opened before the start is sent: if the start never happened, no instance would
    take a request written there."""
    opening = opened(Channel("run-1", ended=True), "req-9")
    assert not takes_requests(opening, None) and not takes_requests(opening, "run-1")
    assert takes_requests(opening, "req-9")  # a status that shows the run: it exists
    offered = offer(opening, "req-10", 10, None)
    assert not offered.channel.starting  # the request's write confirms it
    started = confirmed(opening, "req-9")
    assert started is not None and takes_requests(started, None)
    assert confirmed(started, "req-9") is None and confirmed(opening, "req-8") is None
    assert not takes_requests(None, "req-9")
    assert not takes_requests(Channel("req-9", ended=True), "req-9")
    assert shown_run({"run": "req-9", "processed": 0}) == "req-9"
    assert shown_run(None) is None and shown_run({"run": 3}) is None
    # A take or a begin shows the instance exists: what they write takes requests.
    ended, _ = take(opening, "req-9")
    assert ended is not None and ended.ended and not ended.starting
    began, _ = begin(opened(None, "req-1", 1, iso(DUE), iso(LATEST)), DUE)
    assert began is not None and not began.starting


def test_the_channel_survives_its_stored_form() -> None:
    channel = Channel("a", {"x": [1]}, iso(DUE), iso(LATEST), Pending("b", None), "z", False, True)
    assert Channel.of_json(channel.to_json()) == channel
    with pytest.raises(ValueError):
        Channel.of_json(b"[]")


def test_run_state_takes_only_stops_meant_for_it() -> None:
    assert RunState("r").with_stop({"run": "other"}).stopping is False
    assert RunState("r").with_stop({"run": "r"}).stopping is True
    assert RunState("r").with_stop(None).stopping is True  # raised by hand
    assert RunState("r", due_at=iso(DUE)).with_stop({"run": "other"}).stopping is True
