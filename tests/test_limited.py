"""A limit of N per key against the Durable double and Azurite: at most N instances of a
key, the rest queued in order and started as slots free, without any caller acting;
racing callers in several processes; the bound; onFull=reject; and slots freed by a
failed, a terminated and a purged instance (the sweep)."""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any, Dict, List

import pytest
from azure.functions.timer import TimerRequest

from durable_singleton import Catalog, InvalidInput, SingletonApp, StopMode
from durable_singleton._limited import sweep_key
from durable_singleton.errors import LimitReached, ProblemError, QueueFull
from durable_singleton.limits import OnFull
from tests.support.app import root_of, settled

JOB = "Job"
LIMIT = 2


def no_bad_input(input_: Any) -> None:
    if isinstance(input_, dict) and "bad" in input_:
        raise InvalidInput("bad is not allowed")


def catalog() -> Catalog:
    return Catalog.of({JOB: no_bad_input, "Plain": None}, next_runs=[JOB], limits={JOB: LIMIT})


@pytest.fixture
async def limited(durable, app_env, monkeypatch):
    """The app of one process, with ``Job`` limited to 2 per key (its runs end when a
    test says: durable.end_run)."""
    import os

    from durable_singleton import _settings

    durable.reset(orchestrators={JOB, "Plain"})
    durable.use_storage(os.environ[_settings.STORAGE_CONNECTION], app_env)
    apps: List[SingletonApp] = []

    def process() -> SingletonApp:
        made = SingletonApp(catalog())
        apps.append(made)
        return made

    yield process
    for made in apps:
        await made.close()


def active_of(durable, key: str) -> List[str]:
    return sorted(i for i in durable.active_instances() if i.startswith(f"{key}~"))


def runs_of(durable, key: str) -> List[Dict[str, Any]]:
    """The inputs of the key's runs, in the order they began (without the run member)."""
    return [
        {k: v for k, v in (given or {}).items() if k != "run"}
        for instance_id, _, given, _ in durable.runs
        if instance_id.startswith(f"{key}~")
    ]


async def one_waiting(client, key: str) -> Any:
    """Fill ``key``'s two slots (n=0 in slot 0, n=1) and queue n=2: its admission."""
    first = await client.start_limited(JOB, key, {"n": 0})
    await client.start_limited(JOB, key, {"n": 1})
    waiting = await client.start_limited(JOB, key, {"n": 2})
    assert first.instance_id == f"{key}~0" and waiting.position == 1
    return waiting


async def test_a_key_runs_at_most_its_limit_and_its_queue_in_order(limited, durable) -> None:
    client = limited().client(durable.starter())
    answers = [await client.start_limited(JOB, "tenant-1", {"n": n}) for n in range(5)]
    assert [a.instance_id for a in answers[:2]] == ["tenant-1~0", "tenant-1~1"]
    assert [a.position for a in answers[2:]] == [1, 2, 3]
    assert len({a.request_id for a in answers}) == 5
    assert active_of(durable, "tenant-1") == ["tenant-1~0", "tenant-1~1"]
    other = await client.start_limited(JOB, "tenant-2", {"n": 99})  # keys are apart
    assert other.instance_id == "tenant-2~0"
    for slot in ["tenant-1~0", "tenant-1~1", "tenant-1~0", "tenant-1~1", "tenant-1~0"]:
        durable.end_run(slot)  # each run's end takes the head, no caller acting
        assert len(active_of(durable, "tenant-1")) <= LIMIT
    assert runs_of(durable, "tenant-1") == [{"n": n} for n in range(5)]
    assert active_of(durable, "tenant-1") == []  # the last ends took nothing
    # The runs are named by the requests' ids, as the answers named them.
    named = [run for instance_id, run, _, _ in durable.runs if instance_id.startswith("tenant-1~")]
    assert named == [a.request_id for a in answers]


async def test_racing_callers_in_several_processes_get_the_limit_and_a_queue(
    limited, durable
) -> None:
    clients = [limited().client(durable.starter()) for _ in range(3)]
    answers = await asyncio.gather(
        *[clients[n % 3].start_limited(JOB, "race", {"n": n}) for n in range(7)]
    )
    started = [a for a in answers if a.started]
    assert sorted(a.instance_id for a in started) == ["race~0", "race~1"]
    assert sorted(a.position for a in answers if not a.started) == [1, 2, 3, 4, 5]
    for _ in range(12):
        for slot in active_of(durable, "race"):
            durable.end_run(slot)
        assert len(active_of(durable, "race")) <= LIMIT
    ran = runs_of(durable, "race")
    assert sorted(r["n"] for r in ran) == list(range(7))  # every request ran exactly once
    queued = sorted((a.position, a.request_id) for a in answers if not a.started)
    order = [run for i, run, _, _ in durable.runs if i.startswith("race~")]
    assert [order.index(r) for _, r in queued] == sorted(order.index(r) for _, r in queued)


async def test_past_the_bound_nothing_is_queued_and_reject_refuses(
    limited, durable, monkeypatch
) -> None:
    monkeypatch.setenv("SINGLETON_QUEUE_BOUND", "2")
    client = limited().client(durable.starter())
    for n in range(4):
        await client.start_limited(JOB, "bounded", {"n": n})
    with pytest.raises(QueueFull) as full:
        await client.start_limited(JOB, "bounded", {"n": 4})
    assert full.value.bound == 2
    with pytest.raises(LimitReached) as busy:
        await client.start_limited(JOB, "bounded", {"n": 5}, on_full=OnFull.REJECT)
    assert busy.value.instance_ids == ("bounded~0", "bounded~1")
    for _ in range(4):
        for slot in active_of(durable, "bounded"):
            durable.end_run(slot)
    assert sorted(r["n"] for r in runs_of(durable, "bounded")) == [0, 1, 2, 3]


async def test_bad_requests_change_nothing(limited, durable) -> None:
    client = limited().client(durable.starter())
    with pytest.raises(ProblemError) as no_limit:
        await client.start_limited("Plain", "k", {})
    assert no_limit.value.problem.kind == "no-limit"
    with pytest.raises(ProblemError) as bad_key:
        await client.start_limited(JOB, "a/b", {})
    assert bad_key.value.problem.kind == "invalid-key"
    with pytest.raises(ProblemError) as bad_input:
        await client.start_limited(JOB, "k", {"bad": 1})
    assert bad_input.value.problem.kind == "invalid-input"
    assert durable.created == []


@pytest.mark.parametrize("ending", ["failed", "terminated", "purged"])
async def test_a_slot_freed_without_a_take_starts_the_next_request(
    limited, durable, ending, monkeypatch
) -> None:
    app = limited()
    client = app.client(durable.starter())
    await one_waiting(client, "swept")
    if ending == "terminated":
        # Through the extension's own API, not the app's (whose terminate passes the
        # slot on itself: test_a_slot_terminated_through_the_app_passes_on_...).
        durable.set_status("swept~0", "Terminated")
    else:
        durable.set_status("swept~0", "Failed")
        if ending == "purged":
            del durable.instances["swept~0"]
    assert active_of(durable, "swept") == ["swept~1"]
    root = root_of(app)
    started = await sweep_key(JOB, "swept", LIMIT, root.durable(durable.starter()), root)
    assert started == 1
    assert active_of(durable, "swept") == ["swept~0", "swept~1"]
    assert runs_of(durable, "swept") == [{"n": 0}, {"n": 1}, {"n": 2}]
    # A second sweep finds nothing to do: nobody runs twice.
    assert await sweep_key(JOB, "swept", LIMIT, root.durable(durable.starter()), root) == 0
    assert runs_of(durable, "swept") == [{"n": 0}, {"n": 1}, {"n": 2}]


async def test_a_slot_terminated_through_the_app_passes_on_without_the_sweep(
    limited, durable
) -> None:
    """DELETE mode=terminate (here through the client) on a slot's instance: once the
    instance shows it ended, the slot goes to the queue's head without waiting for the
    sweep's next tick; the sweep then finds nothing to do (nobody runs twice)."""
    app = limited()
    client = app.client(durable.starter())
    await one_waiting(client, "ops")
    await client.stop(JOB, "ops~0", mode=StopMode.TERMINATE)
    await settled(app)  # what the app does after its answer
    assert active_of(durable, "ops") == ["ops~0", "ops~1"]
    assert runs_of(durable, "ops") == [{"n": 0}, {"n": 1}, {"n": 2}]
    root = root_of(app)
    assert await sweep_key(JOB, "ops", LIMIT, root.durable(durable.starter()), root) == 0
    assert runs_of(durable, "ops") == [{"n": 0}, {"n": 1}, {"n": 2}]


async def test_a_terminate_between_a_slots_take_and_its_run_never_names_a_run_that_then_runs(
    limited, durable
) -> None:
    """Slot ops~0 ran n=0; its run ended and took the queue's head (n=2), and the terminate
    arrives before the episode that would begin that run, so the instance ends without it.
    The queue still owes n=2 its run (the sweep gives it back to the head, and it runs):
    the terminate's answer must not say it dropped n=2. Every request runs exactly once."""
    app = limited()
    client = app.client(durable.starter())
    waiting = await one_waiting(client, "cut")
    durable.begin_switch("cut~0", terminated_first=True)  # took n=2, never began it
    stopped = await client.stop(JOB, "cut~0", mode=StopMode.TERMINATE)
    await settled(app)
    root = root_of(app)
    await sweep_key(JOB, "cut", LIMIT, root.durable(durable.starter()), root)
    assert runs_of(durable, "cut") == [{"n": 0}, {"n": 1}, {"n": 2}]  # n=2 ran, once
    assert stopped.dropped_request_id != waiting.request_id  # so never called dropped


async def test_a_terminated_slots_pass_on_races_sweeps_and_new_requests(limited, durable) -> None:
    """The pass-on after a terminate runs beside two other processes' sweeps and new
    requests for the key from three processes: never more than the limit active at one
    moment, and every request runs exactly once (the terminated one had begun)."""
    apps = [limited() for _ in range(3)]
    clients = [made.client(durable.starter()) for made in apps]
    for n in range(4):  # 2 started, 2 queued
        await clients[n % 3].start_limited(JOB, "busy", {"n": n})

    async def sweep(made: SingletonApp, after: float) -> int:
        await asyncio.sleep(after)
        root = root_of(made)
        return await sweep_key(JOB, "busy", LIMIT, root.durable(durable.starter()), root)

    await asyncio.gather(
        clients[0].stop(JOB, "busy~0", mode=StopMode.TERMINATE),
        *[clients[n % 3].start_limited(JOB, "busy", {"n": n}) for n in range(4, 8)],
        sweep(apps[1], 0.0),
        sweep(apps[2], 0.06),  # about when the double ends the terminated instance
    )
    for made in apps:
        await settled(made)
    for _ in range(12):
        for slot in active_of(durable, "busy"):
            durable.end_run(slot)
    assert sorted(r["n"] for r in runs_of(durable, "busy")) == list(range(8))
    active: set = set()
    for _, instance_id, now_active in sorted(durable.activity, key=lambda e: e[0]):
        if instance_id.startswith("busy~"):
            (active.add if now_active else active.discard)(instance_id)
            assert len(active) <= LIMIT, durable.activity


async def test_a_slot_terminated_before_its_first_episode_passes_to_the_next(
    limited, durable
) -> None:
    """Slot 0's instance is terminated while still Pending, before its first episode (its
    status shows no run, as the runtime's does): the slot passes to the request that
    waits; the terminated request is over (its caller was told started, and an
    operator ended it), so it never runs, now or at a later sweep."""
    app = limited()
    client = app.client(durable.starter())
    durable.pickup_delay = None  # slot 0's instance is never picked up
    never = await client.start_limited(JOB, "stuck", {"n": 0})
    durable.pickup_delay = 0.0
    await client.start_limited(JOB, "stuck", {"n": 1})
    waiting = await client.start_limited(JOB, "stuck", {"n": 2})
    assert never.instance_id == "stuck~0" and waiting.position == 1
    assert durable.instances["stuck~0"].custom_status is None
    await client.stop(JOB, "stuck~0", mode=StopMode.TERMINATE)
    await settled(app)  # the terminate passes the slot on once the instance has ended
    root = root_of(app)
    assert runs_of(durable, "stuck") == [{"n": 1}, {"n": 2}]
    assert active_of(durable, "stuck") == ["stuck~0", "stuck~1"]
    assert await sweep_key(JOB, "stuck", LIMIT, root.durable(durable.starter()), root) == 0
    assert runs_of(durable, "stuck") == [{"n": 1}, {"n": 2}]


async def test_a_queued_request_terminated_before_its_first_episode_runs_with_its_input(
    limited, durable
) -> None:
    """A queued request (n=2) is given slot 0 and started there; its start is confirmed
    while its instance is still Pending, and an operator terminates it before its first
    episode. It never began, so the queue still owes it its run (as for a take the
    terminate ends before its run): it goes back to the head and runs, with its own input,
    exactly once."""
    app = limited()
    client = app.client(durable.starter())
    await one_waiting(client, "owed")
    durable.pickup_delay = None  # what starts now is never picked up
    await client.stop(JOB, "owed~0", mode=StopMode.TERMINATE)  # n=0 had begun
    await settled(app)  # the slot passed to n=2: started, Pending, its start confirmed
    assert durable.instances["owed~0"].status == "Pending"
    durable.pickup_delay = 0.0
    await client.stop(JOB, "owed~0", mode=StopMode.TERMINATE)  # n=2 never began
    await settled(app)
    assert runs_of(durable, "owed") == [{"n": 0}, {"n": 1}, {"n": 2}]
    root = root_of(app)
    await sweep_key(JOB, "owed", LIMIT, root.durable(durable.starter()), root)
    assert runs_of(durable, "owed") == [{"n": 0}, {"n": 1}, {"n": 2}]


async def test_a_request_taken_by_an_instance_that_fails_before_running_it_still_runs(
    limited, durable
) -> None:
    """Slot 0's run ends and takes the queue's head (n=2): the take lands, and the instance
    then fails before the episode that would begin n=2 (its SingletonNextRun lost every
    answer, so the orchestration failed). Nobody else waits and no start is unconfirmed,
    yet the queue owes n=2 its run: the sweep timer alone must give it one, exactly once."""
    app = limited()
    client = app.client(durable.starter())
    await one_waiting(client, "failed-take")
    durable.begin_switch("failed-take~0")  # took n=2; the episode that begins it never runs
    durable.set_status("failed-take~0", "Failed")
    durable.end_run("failed-take~1")  # took nothing: nobody waits now
    for _ in range(2):
        await app.limit_sweep(TimerRequest(), durable.starter())
        await settled(app)
    assert runs_of(durable, "failed-take") == [{"n": 0}, {"n": 1}, {"n": 2}]
    for _ in range(2):  # once: later ticks find it ran
        await app.limit_sweep(TimerRequest(), durable.starter())
    assert runs_of(durable, "failed-take") == [{"n": 0}, {"n": 1}, {"n": 2}]


async def test_the_sweep_timer_moves_only_the_queues_that_wait(limited, durable, caplog) -> None:
    caplog.set_level(logging.INFO)
    app = limited()
    client = app.client(durable.starter())
    for n in range(3):
        await client.start_limited(JOB, "timer-a", {"n": n})  # two run, one waits
    await client.start_limited(JOB, "timer-b", {"n": 9})  # runs; nobody waits
    durable.set_status("timer-a~1", "Failed")  # ended without passing its slot on
    durable.set_status("timer-b~0", "Failed")
    before = durable.calls["status"]
    report = await app.limit_sweep(TimerRequest(), durable.starter())
    assert report is not None and report.swept == ["timer-a"] and report.started == 1
    assert durable.calls["status"] - before <= 4  # timer-b, with nobody waiting, untouched
    assert active_of(durable, "timer-a") == ["timer-a~0", "timer-a~1"]
    assert [r["n"] for r in runs_of(durable, "timer-a")] == [0, 1, 2]
    again = await app.limit_sweep(TimerRequest(), durable.starter())
    assert again is not None and again.swept == [] and again.started == 0
    assert "SingletonLimitSweep" in caplog.text and "decision=sweep-done" in caplog.text


async def test_retention_leaves_a_slot_the_sweep_has_yet_to_settle(limited, durable) -> None:
    from durable_singleton._retention import run_retention
    from durable_singleton._settings import Retention

    app = limited()
    client = app.client(durable.starter())
    await client.start_limited(JOB, "kept", {"n": 0})
    durable.set_status("kept~0", "Terminated")  # ended without passing its slot on
    root = root_of(app)
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=40)
    retention = Retention(enabled=True, days=30)
    report = await run_retention(root, root.durable(durable.starter()), retention, later)
    assert report.purged == [] and "kept~0" in durable.instances  # its run is in its status
    await sweep_key(JOB, "kept", LIMIT, root.durable(durable.starter()), root)
    report = await run_retention(root, root.durable(durable.starter()), retention, later)
    assert report.purged == ["kept~0"]


async def _free_slot_while_its_instance_ends(app: SingletonApp, durable, key: str) -> None:
    """The slot's run ended and took nothing (its slot is free in the queue), and its
    instance has yet to complete, as between the take and the episode's end."""
    from durable_singleton import _limit
    from durable_singleton._next_run import iso

    root = root_of(app)
    hub = root.durable(durable.starter()).task_hub
    run = durable.instances[f"{key}~0"].run.id
    now = iso(datetime.datetime.now(datetime.timezone.utc))
    await root.queues().change(hub, key, lambda q: _limit.take(q, 0, run, now))


async def test_a_start_in_a_slot_costs_its_blob_calls(durable, app_env) -> None:
    """A start that finds a slot free: the queue's read and write (the admission), the
    slot's lock (create, lease, release), the queue read under the lease, and one write
    that confirms the start on the queue as that read left it (docs/design.md, cost)."""
    import os

    from durable_singleton import _settings
    from tests.support.blob_counter import RequestCounter

    durable.reset(orchestrators={JOB, "Plain"})
    durable.use_storage(os.environ[_settings.STORAGE_CONNECTION], app_env)
    counter = RequestCounter()
    made = SingletonApp(catalog(), blob_options={"raw_request_hook": counter})
    try:
        client = made.client(durable.starter())
        await client.start_limited(JOB, "warm", {"n": 0})  # the container exists from here on
        await settled(made)
        mark = counter.requests
        admitted = await client.start_limited(JOB, "costed", {"n": 1})
        await settled(made)
        assert admitted.instance_id == "costed~0"
        assert counter.requests - mark == 7
    finally:
        await made.close()


async def test_a_start_in_a_slot_waits_for_its_last_instance_to_end(limited, durable) -> None:
    app = limited()
    client = app.client(durable.starter())
    await client.start_limited(JOB, "ending", {"n": 0}, on_full=OnFull.QUEUE)
    await client.start_limited(JOB, "ending", {"n": 1})
    await _free_slot_while_its_instance_ends(app, durable, "ending")
    later = asyncio.get_running_loop().call_later(0.3, durable.set_status, "ending~0", "Completed")
    try:
        admitted = await client.start_limited(JOB, "ending", {"n": 2})
    finally:
        later.cancel()
    assert admitted.instance_id == "ending~0"  # once the last instance had ended
    assert runs_of(durable, "ending") == [{"n": 0}, {"n": 1}, {"n": 2}]


async def test_a_slot_whose_instance_does_not_end_is_given_back(
    limited, durable, monkeypatch
) -> None:
    from durable_singleton.errors import InstanceEnding

    monkeypatch.setenv("SINGLETON_NEXT_RUN_WAIT_SECONDS", "1")
    app = limited()
    client = app.client(durable.starter())
    await client.start_limited(JOB, "stays", {"n": 0})
    await client.start_limited(JOB, "stays", {"n": 1})
    await _free_slot_while_its_instance_ends(app, durable, "stays")
    with pytest.raises(InstanceEnding):  # nothing started; the caller may retry
        await client.start_limited(JOB, "stays", {"n": 2})
    durable.set_status("stays~0", "Completed")
    again = await client.start_limited(JOB, "stays", {"n": 3})
    assert again.instance_id == "stays~0"  # the slot was given back
    assert runs_of(durable, "stays") == [{"n": 0}, {"n": 1}, {"n": 3}]


async def test_a_limit_of_one_is_the_singleton_of_its_key(durable, app_env) -> None:
    import os

    from durable_singleton import _settings

    durable.reset(orchestrators={"Solo"})
    durable.use_storage(os.environ[_settings.STORAGE_CONNECTION], app_env)
    app = SingletonApp(Catalog.of(["Solo"], next_runs=["Solo"], limits={"Solo": 1}))
    try:
        client = app.client(durable.starter())
        first = await client.start_limited("Solo", "account-9", {"n": 0})
        second = await client.start_limited("Solo", "account-9", {"n": 1})
        assert (first.instance_id, second.position) == ("account-9~0", 1)
        with pytest.raises(LimitReached):
            await client.start_limited("Solo", "account-9", {"n": 2}, on_full=OnFull.REJECT)
        durable.end_run("account-9~0")  # the one slot passes to the one waiting
        assert active_of(durable, "account-9") == ["account-9~0"]
        durable.end_run("account-9~0")
        assert runs_of(durable, "account-9") == [{"n": 0}, {"n": 1}]
        assert active_of(durable, "account-9") == []
    finally:
        await app.close()


async def test_only_a_slot_of_an_orchestrator_with_a_limit_is_passed_on(limited) -> None:
    """Which terminated ids the app passes on: a slot within the key's limit, written as
    the app writes slot ids; no other id of the orchestrator, no id of another one."""
    from durable_singleton._limited import slot_of

    root = root_of(limited())
    assert slot_of(JOB, "tenant~1", root) == ("tenant", LIMIT)
    assert slot_of(JOB, "a~b~0", root) == ("a~b", LIMIT)
    for instance_id in ["tenant", f"tenant~{LIMIT}", "tenant~01", "~0", "tenant~"]:
        assert slot_of(JOB, instance_id, root) is None, instance_id
    assert slot_of("Plain", "tenant~0", root) is None


def test_a_limit_is_checked_when_the_catalog_is_made() -> None:
    with pytest.raises(ValueError):
        Catalog.of(["Job"], next_runs=["Job"], limits={"Job": 0})
    with pytest.raises(ValueError):
        Catalog.of(["Job"], next_runs=["Job"], limits={"Job": 101})
    with pytest.raises(ValueError):  # it could not pass its slot on
        Catalog.of(["Job"], limits={"Job": 2})
