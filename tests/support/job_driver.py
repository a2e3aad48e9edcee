"""Drive SingletonOrchestrator to the end through the SDK's replay engine, as the
Durable runtime does: every episode replays the execution's whole history, the
activities an episode scheduled run (at once, with ``activity_seconds`` each, when
several are in flight) and their results arrive together in the next episode, and
continue-as-new begins a new execution with a new history.

Activities run in-process: SingletonActivity's own ``main``, an in-memory stand-in
for SingletonItemStore with the same requests and answers (its real code is tested
against Azurite separately), and SingletonNextRun's own code
(``durable_singleton._next_run_store.handle``) on an in-memory channel store. Only the
orchestrator's CPU time is counted.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from azure.durable_functions.models.actions.ActionType import ActionType

import SingletonActivity
import SingletonOrchestrator
from durable_singleton._next_run import NEXT_RUN_ACTIVITY, Channel
from durable_singleton._next_run_store import handle as next_run
from durable_singleton.job._run import ACTIVITY, ITEM_STORE
from tests.support.history import History

CALL_ACTIVITY = ActionType.CALL_ACTIVITY
CALL_ACTIVITY_WITH_RETRY = ActionType.CALL_ACTIVITY_WITH_RETRY
CONTINUE_AS_NEW = ActionType.CONTINUE_AS_NEW
CREATE_TIMER = ActionType.CREATE_TIMER

#: Runs the activities of one episode at once (up to the largest parallelism).
_POOL = ThreadPoolExecutor(max_workers=64)


@dataclass
class JobRun:
    """What one drive saw."""

    output: Any = None
    episodes: int = 0
    executions: int = 0
    orchestrator_seconds: float = 0.0
    longest_history: int = 0  # events in the longest history any episode replayed
    statuses: List[Dict[str, Any]] = field(default_factory=list)
    activity_calls: int = 0
    inputs: List[Any] = field(default_factory=list)  # each execution's input, in order


class MemoryItemStore:
    """SingletonItemStore's requests, answered from a dict."""

    def __init__(self) -> None:
        """Empty."""
        self.stores: Dict[str, List[Any]] = {}

    def __call__(self, request: Dict[str, Any]) -> Any:
        """Answer one request as the activity does."""
        if request["op"] == "stage":
            store = f"{request['instanceId']}/{request['key']}"
            self.stores[store] = list(request["items"])
            return {"store": store}
        if request["op"] == "load":
            start = request["start"]
            return self.stores[request["store"]][start : start + request["count"]]
        self.stores.pop(request["store"], None)
        return None


class MemoryChannels:
    """Next-run channels in a dict, with NextRunStore's ``change``: what the job's
    activity code runs on in these tests. ``before_change`` runs before each change
    (a test changes the channel there, as a request or a Stop would meanwhile)."""

    def __init__(self) -> None:
        """No channels."""
        self.channels: Dict[Tuple[str, str], Channel] = {}
        self.before_change: Callable[["MemoryChannels"], None] = lambda _: None

    async def change(self, hub: str, instance_id: str, decide: Callable[[Any], Any]) -> Any:
        """Apply ``decide`` to the channel and keep what it writes, as the store does."""
        self.before_change(self)
        written, result = decide(self.channels.get((hub, instance_id)))
        if written is not None:
            self.channels[(hub, instance_id)] = written
        return result

    def __call__(self, request: Dict[str, Any]) -> Any:
        """Answer one SingletonNextRun request with the activity's own code."""
        return asyncio.run(next_run(self, request))  # type: ignore[arg-type]


def _parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def flattened(actions: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The actions, compound ones (a task_any, a retried call) opened up, in order."""
    flat: List[Dict[str, Any]] = []
    for action in actions:
        inner = action.get("compoundActions")
        flat.extend(flattened(inner) if inner is not None else [action])
    return flat


def actions_of(state: Dict[str, Any], kind: ActionType) -> List[Dict[str, Any]]:
    """An episode's actions of ``kind``, compound ones opened up, in order."""
    flat = flattened(state["actions"][0]) if state["actions"] else []
    return [action for action in flat if action["actionType"] == kind]


def next_run_calls(state: Dict[str, Any]) -> List[Any]:
    """The inputs of an episode's calls to SingletonNextRun."""
    return [
        json.loads(action["input"])
        for action in actions_of(state, ActionType.CALL_ACTIVITY_WITH_RETRY)
        if action["functionName"] == NEXT_RUN_ACTIVITY
    ]


def continued_with(state: Dict[str, Any]) -> Any:
    """The input of an episode's one continue-as-new."""
    [action] = actions_of(state, ActionType.CONTINUE_AS_NEW)
    return json.loads(action["input"])


def take_answered(
    history: History, answer: Any, episode: Callable[[History], Dict[str, Any]]
) -> Dict[str, Any]:
    """The run's take was scheduled; SingletonNextRun answers ``answer``; the state after
    the next ``episode``."""
    sequence = history.scheduled(NEXT_RUN_ACTIVITY)
    history.new_episode().completed(sequence, answer)
    return episode(history)


def _new_actions(state: Dict[str, Any], seen: int) -> List[Dict[str, Any]]:
    return flattened(state["actions"][0] if state["actions"] else [])[seen:]


def drive(
    input_: Any,
    instance_id: str = "big-job",
    before_episode: Optional[Callable[[History, JobRun], None]] = None,
    max_episodes: int = 10**7,
    activity_seconds: float = 0.0,
    channels: Optional[MemoryChannels] = None,
    orchestrator: Callable[[str], str] = SingletonOrchestrator.main,
    activities: Optional[Dict[str, Callable[[Any], Any]]] = None,
) -> JobRun:
    """Run the job with ``input_`` until it completes; return what happened.

    ``before_episode`` may add events (a Stop) to the history before an episode runs.
    A durable timer fires in the episode after it was created, at its fire time.
    ``activity_seconds``: how long SingletonActivity takes per item (a sleep).
    ``channels``: where SingletonNextRun keeps next-run channels (empty by default).
    ``orchestrator``: another orchestrator's ``main`` (``df.Orchestrator.create(...)``) to
    drive instead, with its own ``activities`` beside SingletonNextRun.
    """
    run = JobRun()
    store = MemoryItemStore()
    next_runs = channels or MemoryChannels()

    def activity(work: Any) -> Any:
        if activity_seconds:
            time.sleep(activity_seconds)
        return SingletonActivity.main(work)

    run_activities: Dict[str, Callable[[Any], Any]] = {
        ACTIVITY: activity,
        ITEM_STORE: store,
        NEXT_RUN_ACTIVITY: next_runs,
        **(activities or {}),
    }
    while True:
        run.executions += 1
        run.inputs.append(input_)
        history = History(input_, instance_id)
        seen = 0
        while run.episodes < max_episodes:
            if before_episode is not None:
                before_episode(history, run)
            context = history.context()
            began = time.process_time()
            state = json.loads(orchestrator(context))
            run.orchestrator_seconds += time.process_time() - began
            run.episodes += 1
            run.longest_history = max(run.longest_history, len(history.events))
            run.statuses.append(state.get("customStatus"))
            new = _new_actions(state, seen)
            seen += len(new)
            continued = [a for a in new if a["actionType"] == CONTINUE_AS_NEW]
            if continued:
                input_ = json.loads(continued[0]["input"])
                break
            if state["isDone"]:
                run.output = state.get("output")
                return run
            calls = [
                a for a in new if a["actionType"] in (CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY)
            ]
            timers = [a for a in new if a["actionType"] == CREATE_TIMER]
            if timers and not calls:
                fire_at = _parse_time(timers[0]["fireAt"])
                timer = history.timer_created(fire_at)
                seconds = (fire_at - history.now).total_seconds()
                history.new_episode(seconds).timer_fired(timer, fire_at)
                continue
            if not calls:
                raise AssertionError(f"expected an activity call or a timer, got {new}")
            sequences = [history.scheduled(call["functionName"]) for call in calls]
            results = list(
                _POOL.map(
                    lambda call: run_activities[call["functionName"]](json.loads(call["input"])),
                    calls,
                )
            )
            run.activity_calls += len(calls)
            history.new_episode()
            for sequence, result in zip(sequences, results, strict=True):
                history.completed(sequence, result)
        else:
            raise AssertionError("the job did not end within max_episodes")
