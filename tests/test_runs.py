"""Next runs in an orchestrator of an app's own (``durable_singleton.runs``): a decorated
orchestrator through the SDK's replay engine, episode by episode, as the Durable runtime
replays it; its calls to SingletonNextRun are those the sample job makes
(tests/test_job_next_run.py), so the activity and the starter need nothing new."""

from __future__ import annotations

import datetime
import json
from typing import Any, Dict, Generator, List

import azure.durable_functions as df
from azure.durable_functions.models.actions.ActionType import ActionType

from durable_singleton import runs
from durable_singleton._next_run import (
    NEXT_RUN_ACTIVITY,
    Channel,
    Pending,
    iso,
    start_member,
    stop_event,
)
from tests.support.history import START, History
from tests.support.job_driver import (
    MemoryChannels,
    actions_of,
    continued_with,
    drive,
    next_run_calls,
)
from tests.support.job_driver import take_answered as answer_take

HUB = "hub"
DUMP = "dump"
DUE = START + datetime.timedelta(seconds=30)


def export(context: df.DurableOrchestrationContext, run: runs.Run) -> Generator[Any, Any, Any]:
    """An orchestrator as an app writes one: a table at a time, taking a Stop at each."""
    done: List[Any] = []
    for table in run.input["tables"]:
        if run.stopping:
            break
        run.show({"exported": len(done)})
        task = context.call_activity(DUMP, table)
        if (yield from run.wait(task)):
            done.append((yield task))
    return {"exported": done, "stopped": run.stopping}


main = df.Orchestrator.create(runs.takes_next_runs(export))


def episode(history: History) -> Dict[str, Any]:
    return json.loads(main(history.context()))


def dumps(state: Dict[str, Any]) -> List[Any]:
    return [json.loads(a["input"]) for a in actions_of(state, ActionType.CALL_ACTIVITY)]


def started(tables: List[str], run_id: str = "run-1", **member: Any) -> History:
    return History({"tables": tables, "run": {"id": run_id, "hub": HUB, **member}})


def dumped(history: History, results: List[Any]) -> Dict[str, Any]:
    """Each table's dump scheduled and completed, an episode each; the state after."""
    for result in results:
        sequence = history.scheduled(DUMP)
        history.new_episode().completed(sequence, result)
    return episode(history)


def take_answered(history: History, answer: Any) -> Dict[str, Any]:
    return answer_take(history, answer, episode)


def test_the_work_gets_the_callers_input_and_the_status_shows_the_run_at_once() -> None:
    state = episode(started(["a", "b"]))
    assert dumps(state) == ["a"]  # the input without the app's member run
    assert state["customStatus"] == {
        "exported": 0,
        "run": "run-1",
        "dueAt": None,
        "stopping": False,
    }


def test_at_its_end_the_run_takes_its_next_run_and_continues_with_it() -> None:
    history = started(["a"])
    state = dumped(history, ["da"])
    assert next_run_calls(state) == [
        {"op": "take", "run": "run-1", "hub": HUB, "instanceId": history.instance_id}
    ]
    state = take_answered(history, {"request": "req-2", "input": {"tables": ["x"]}})
    assert continued_with(state) == {"tables": ["x"], "run": {"id": "req-2", "hub": HUB}}


def test_with_no_next_run_it_completes_with_the_works_output() -> None:
    history = started(["a", "b"])
    state = take_answered_after(history, ["da", "db"], None)
    assert state["isDone"] is True and not actions_of(state, ActionType.CONTINUE_AS_NEW)
    assert state["output"] == {"exported": ["da", "db"], "stopped": False}


def take_answered_after(history: History, results: List[Any], answer: Any) -> Dict[str, Any]:
    dumped(history, results)
    return take_answered(history, answer)


def test_an_instance_the_app_did_not_start_takes_nothing() -> None:
    history = History({"tables": ["a"]})
    state = dumped(history, ["da"])
    assert state["isDone"] is True and next_run_calls(state) == []
    assert state["output"] == {"exported": ["da"], "stopped": False}


def test_a_stop_for_this_run_ends_the_work_at_once_then_it_takes() -> None:
    history = started(["a", "b"])
    dumped(history, ["da"])
    history.scheduled(DUMP)  # b is being dumped
    history.new_episode().event_raised("Stop", stop_event("run-1"))
    state = episode(history)
    assert state["customStatus"]["stopping"] is True
    assert [c["op"] for c in next_run_calls(state)] == ["take"]
    state = take_answered(history, None)
    assert state["output"] == {"exported": ["da"], "stopped": True}


def test_a_stop_meant_for_another_run_is_not_this_runs() -> None:
    history = started(["a", "b"], run_id="req-2")
    dumped(history, ["da"])
    history.scheduled(DUMP)
    history.new_episode().event_raised("Stop", stop_event("run-1"))
    state = episode(history)
    assert state["customStatus"]["stopping"] is False and next_run_calls(state) == []


def test_a_stop_for_the_run_taken_arriving_with_the_take_is_carried_to_it() -> None:
    history = started(["a"])
    dumped(history, ["da"])
    sequence = history.scheduled(NEXT_RUN_ACTIVITY)
    history.new_episode().event_raised("Stop", stop_event("req-2"))
    history.completed(sequence, {"request": "req-2", "input": {"tables": ["x"]}})
    state = episode(history)
    assert continued_with(state)["run"] == {"id": "req-2", "hub": HUB, "stopping": True}


def test_a_run_that_begins_stopping_does_no_work_and_takes() -> None:
    history = started(["a"], run_id="req-2", stopping=True)
    state = episode(history)
    assert dumps(state) == [] and [c["op"] for c in next_run_calls(state)] == ["take"]
    state = take_answered(history, None)
    assert state["isDone"] is True and state.get("output") is None


def test_a_debounced_run_waits_until_due_then_begins_with_the_latest_input() -> None:
    history = History({"tables": ["a"], "run": start_member("req-1", HUB, iso(DUE), iso(DUE))})
    state = episode(history)
    [timer] = actions_of(state, ActionType.CREATE_TIMER)
    assert timer["fireAt"].startswith(iso(DUE)[:19]) and dumps(state) == []
    assert state["customStatus"]["dueAt"] == iso(DUE)
    fired = history.timer_created(DUE)
    history.new_episode(30).timer_fired(fired, DUE)
    state = episode(history)
    assert [c["op"] for c in next_run_calls(state)] == ["begin"]
    state = take_answered(history, {"begin": {"request": "req-3", "input": {"tables": ["c"]}}})
    assert continued_with(state) == {"tables": ["c"], "run": {"id": "req-3", "hub": HUB}}


def test_a_stop_while_a_debounced_run_waits_ends_it_unrun_and_takes() -> None:
    history = History({"tables": ["a"], "run": start_member("req-1", HUB, iso(DUE), iso(DUE))})
    history.timer_created(DUE)
    history.new_episode(5).event_raised("Stop", stop_event("req-1"))
    state = episode(history)
    assert actions_of(state, ActionType.CREATE_TIMER)[0]["isCanceled"] is True
    assert dumps(state) == [] and [c["op"] for c in next_run_calls(state)] == ["take"]


def test_a_plain_function_works_too_and_never_sees_the_apps_member() -> None:
    plain = df.Orchestrator.create(runs.takes_next_runs(lambda context, run: run.input))
    state = json.loads(plain(History({"n": 21, "run": {"id": "r"}}).context()))
    assert state["isDone"] is True and state["output"] == {"n": 21}


def test_the_orchestrator_keeps_the_works_name_for_the_runtime_to_index() -> None:
    wrapped = runs.takes_next_runs(export)
    assert wrapped.__name__ == "export" and not hasattr(wrapped, "__wrapped__")


def test_driven_to_the_end_each_request_runs_once_in_order_under_the_same_id() -> None:
    """The SDK's engine drives it to the end, SingletonNextRun's own code on a channel
    that holds a next run: the first run, then the next run, then it completes."""
    channels = MemoryChannels()
    channels.channels[(HUB, "exports")] = Channel(
        "run-1", next=Pending("req-2", {"tables": ["x", "y"]})
    )
    done = drive(
        {"tables": ["a"], "run": {"id": "run-1", "hub": HUB}},
        instance_id="exports",
        channels=channels,
        orchestrator=main,
        activities={DUMP: lambda table: f"dumped {table}"},
    )
    assert done.executions == 2
    assert [i["run"]["id"] for i in done.inputs] == ["run-1", "req-2"]
    assert done.output == {"exported": ["dumped x", "dumped y"], "stopped": False}
    assert channels.channels[(HUB, "exports")].ended


def test_a_stop_in_the_batch_of_a_result_ends_the_run_at_its_next_wait() -> None:
    """a's result and the Stop arrive in one batch. The SDK hands the result over first,
    so b is scheduled before the Stop is seen (replay must see what the first run saw);
    the Stop is taken at b's wait: the run ends stopped without waiting for b."""
    history = started(["a", "b"])
    sequence = history.scheduled(DUMP)
    history.new_episode().completed(sequence, "da").event_raised("Stop", stop_event("run-1"))
    state = episode(history)
    assert dumps(state) == ["a", "b"] and [c["op"] for c in next_run_calls(state)] == ["take"]
    history.scheduled(DUMP)
    state = take_answered(history, None)
    assert state["output"] == {"exported": ["da"], "stopped": True}
