"""A bounded chaos run: several app processes, many callers over a few ids, while the
storage account and the Durable API are cut, stalled, lose answers and hold requests past
the app's time limits (carrying them out late) at random.

The Durable double carries out a start whose answer was lost (as the extension does)
and completes every instance after a moment, so each id goes through several
generations. Afterwards, for every generation of every id, at most one caller was
told 202, every 202 names the generation its own start created, no start was
accepted while another execution of the id was active, and no caller whose start
created a generation was told anything but 202 or "may have started".

Callers with onConflict=bufferOne and with debounceSeconds=1 hand their input to the
running instance as its next run, a burst caller sends dozens of them a second for one
id, and a stopper stops ids now and then. Afterwards, besides: no input ran twice; every
input whose caller was told ``buffered`` or ``debounced`` ran exactly once, unless a
later request's answer said it replaced it or a Stop's answer said it dropped it; no
run began before the due time its caller was told; and no request whose every answer
said it did nothing (no 202, nothing that says it may have happened) ever ran.

Callers with an Idempotency-Key retry after every 503 (and after their first 202, which
they treat as lost). For them, besides: no key started more than one generation, every
202 a key got (first or given again) names the generation that key started, the retry
after a 202 gets it again, and every key's last answer is definite: 202 for the
generation it started, or a refusal for a key that started nothing (or
``idempotency-key-superseded``, which claims neither).

Callers with a limit per key start SingletonOrchestrator (3 per key) for two keys and
cancel now and then a request told ``queued``; once the callers stop, the sweep runs as
its timer would until no request waits and no reservation is unconfirmed. Afterwards,
besides: never more than 3 instances of a key were active at one moment (from the
double's log of instances becoming active and ending); every request told ``started``
or ``queued`` ran exactly once, unless a cancel's answer said it was cancelled (at most
once when a cancel's answer was lost: it may have been); and of two requests told
``queued``, the one answered before the other was sent was given a slot first.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import time
from typing import Any, Dict, List

import pytest

from durable_singleton._next_run import parse_time
from durable_singleton._settings import STORAGE_CONNECTION
from tests.support.app import change_setting
from tests.support.azurite import connection_string
from tests.support.chaos_worker import LIMIT_KEYS, TERMINATED_KEY
from tests.support.durable_double import ACTIVE
from tests.support.fault_proxy import FaultProxy
from tests.support.processes import AppProcesses
from tests.support.report import report

PROCESSES = 3
CALLERS_PER_PROCESS = 8
#: The last is started by the debounce callers only (tests/support/chaos_worker.py).
IDS = ["chaos-a", "chaos-b", "chaos-c", "chaos-d", "chaos-quiet"]
SECONDS = 12.0
#: Answers that say a start may have happened; every other non-202 says it did not.
MAY_HAVE_STARTED = {"start-outcome-unknown", "queue-outcome-unknown"}
#: SingletonOrchestrator's limit per key (its module's concurrency_limit).
LIMIT = 3
#: A keyed caller's last answer that says nothing about whether its key started.
NEITHER = {"idempotency-key-superseded"}
#: Answers that say a request may have been carried out, or say nothing either way: every
#: other non-202 answer to a start says nothing was started, buffered or queued.
MAY_HAVE_ACTED = (
    MAY_HAVE_STARTED | NEITHER | {"next-run-outcome-unknown", "idempotency-key-in-progress"}
)


async def settled(durable: Any, seconds: float) -> None:
    """Wait (bounded) until no instance is active: every next or waiting run has run (each
    run completes a moment after it begins)."""
    deadline = time.time() + seconds
    while time.time() < deadline and any(
        i.status in ACTIVE for i in list(durable.instances.values())
    ):
        await asyncio.sleep(0.2)


async def drained(durable: Any, seconds: float) -> "tuple[int, str]":
    """Run the sweep (as SingletonLimitSweep's timer would) until no key's queue has a
    request waiting or a reservation unconfirmed and no instance is active, bounded;
    return the ticks it took and what was left then ("" when nothing was). The keys'
    instances end a moment after each run begins and pass their slots on. A slot whose
    instance ended without passing it on (a terminated slot) while nobody waits is
    left as it is: the sweep frees it once a request waits (durable_singleton._limit_sweep)."""
    from durable_singleton._limit_sweep import sweep_all
    from tests.support.app import app, root_of

    root = root_of(app)
    client = root.durable(durable.starter())
    deadline, ticks, left = time.time() + seconds, 0, ""
    while time.time() < deadline:
        await sweep_all(root, client)
        ticks += 1
        queues = {key: await root.queues().read(client.task_hub, key) for key in LIMIT_KEYS}
        left = "; ".join(
            f"{key}: {len(q.waiting)} waiting, unconfirmed slots "
            f"{sorted(n for n, slot in q.slots.items() if not slot.confirmed)}"
            for key, q in queues.items()
            if q is not None and (q.waiting or any(not s.confirmed for s in q.slots.values()))
        )
        active = [i for i, s in list(durable.instances.items()) if s.status in ACTIVE]
        if active:
            left += f"; active {sorted(active)}"
        if not left:
            break
        await asyncio.sleep(1.0)
    return ticks, left


def request_story(answer: list, answers: List[list], queue: Any, durable: Any) -> str:
    """For a limited request: every answer about it (its start's, its cancels'), where its
    key's queue, as the run left it, says it went, and what the double knows of the key's
    slots (each instance's status and shown run, and the runs each slot began)."""
    request, key = answer[8], answer[12]
    said = [a for a in answers if a[8] == request]
    slots = {
        instance_id: (instance.status, instance.custom_status)
        for instance_id, instance in list(durable.instances.items())
        if instance_id.startswith(f"{key}~")
    }
    began = [(i, run_id) for i, run_id, _, _ in durable.runs if i.startswith(f"{key}~")]
    known = f"; the double's slots {slots}; runs begun there (last 12) {began[-12:]}"
    if queue is None:
        return f"{said}; its key has no queue{known}"
    return (
        f"{said}; its key's queue after the drain: waiting at {queue.position(request)}, "
        f"holding slot {queue.slot_of(request)}, given a slot "
        f"{[n for r, n in queue.started if r == request]}, "
        f"cancelled {request in queue.cancelled}; slots {queue.slots}{known}"
    )


def most_active_per_key(durable: Any) -> Dict[str, int]:
    """From the double's log of instances becoming active and ending: the most instances
    of each key active at one moment."""
    active: Dict[str, set] = collections.defaultdict(set)
    most: Dict[str, int] = collections.defaultdict(int)
    for _, instance_id, now_active in sorted(durable.activity, key=lambda e: e[0]):
        key, _, slot = instance_id.rpartition("~")
        if key not in LIMIT_KEYS:
            continue
        assert slot.isdigit() and int(slot) < LIMIT, instance_id
        (active[key].add if now_active else active[key].discard)(instance_id)
        most[key] = max(most[key], len(active[key]))
    return dict(most)


async def inject_faults(proxies: List[FaultProxy], until: float, rng: random.Random) -> int:
    """Break one proxy at a time, for a random moment, until ``until``. ``late`` holds
    each request begun meanwhile past the app's 1 s limits (a slow server that carries
    it out after its client gave up), and well within a lease's 15 s."""
    injected = 0
    modes = ["cut", "stall", "cut_responses", "late", "pass"]
    while time.time() < until:
        proxy = rng.choice(proxies)
        mode = rng.choice(modes)
        proxy.set(mode, delay=rng.uniform(1.2, 3.0) if mode == "late" else 0.0)
        injected += mode != "pass"
        await asyncio.sleep(rng.uniform(0.1, 0.8))
        proxy.set("pass")
        await asyncio.sleep(rng.uniform(0.2, 1.0))
    return injected


@pytest.mark.processes
async def test_chaos_never_two_winners_and_every_202_is_true(
    durable, azurite, app_env, monkeypatch
) -> None:
    durable.reset(complete_after=1.0, start_check_delay=0.02, stop_delay=0.2)
    durable.use_storage(azurite.connection_string, app_env)
    storage = FaultProxy(azurite.port).start()
    api = FaultProxy(durable.port).start()
    seed = int(os.environ.get("CHAOS_SEED", random.randrange(10**6)))
    try:
        start_at = time.time() + 5  # after every process has imported the app
        env = {
            STORAGE_CONNECTION: connection_string(storage.port),
            "SINGLETON_STORAGE_TIMEOUT_SECONDS": "1",
            "SINGLETON_DURABLE_TIMEOUT_SECONDS": "1",
            "SINGLETON_LOCK_WAIT_SECONDS": "2",
            "SINGLETON_NEXT_RUN_WAIT_SECONDS": "2",
        }
        workers = AppProcesses()
        for n in range(PROCESSES):
            await workers.start(
                "-m",
                "tests.support.chaos_worker",
                f"http://127.0.0.1:{api.port}/durabletask/",
                ",".join(IDS),
                str(CALLERS_PER_PROCESS),
                str(SECONDS),
                str(start_at),
                str(seed + n),
                env=env,
            )
        await asyncio.sleep(max(0.0, start_at - time.time()))
        faults = await inject_faults([storage, api], start_at + SECONDS - 1, random.Random(seed))
        outputs = await workers.outputs(90)
        # This process sweeps as one more instance of the app, with the app's settings
        # (the sweep leaves a reservation to its starter for a time they set).
        for name, value in env.items():
            if name.startswith("SINGLETON_"):
                await change_setting(monkeypatch, name, value)
        sweeps, left = await drained(durable, 60)
        await settled(durable, 15)
    finally:
        storage.stop()
        api.stop()
    answers: List[list] = []
    for out in outputs:
        answers.extend(json.loads(out))

    told = collections.Counter(answer[2] for answer in answers)
    kinds = collections.Counter(answer[3] for answer in answers if answer[3])
    created = {(instance_id, value["items"][0]) for instance_id, value in durable.created}
    by_token: Dict[str, list] = {answer[1]: answer for answer in answers}  # the last one
    keyed = {answer[1] for answer in answers if answer[4]}
    replayed = sum(1 for answer in answers if answer[5])
    outcomes = collections.Counter(answer[7] for answer in answers if answer[7])
    bursts = [answer for answer in answers if answer[6] == "burst"]
    report(
        f"chaos (seed {seed}): {len(answers)} answers from {PROCESSES} processes x "
        f"{CALLERS_PER_PROCESS} callers over {len(IDS)} ids in {SECONDS:g} s; faults injected "
        f"{faults} (connections broken {storage.faults + api.faults}); told 202 "
        f"{told[202]}, 409 {told[409]}, 503 {told[503]}, other "
        f"{len(answers) - told[202] - told[409] - told[503]}; problems {dict(kinds)}; "
        f"generations {len(created)}; keyed starts {len(keyed)}, answers given again "
        f"{replayed}; outcomes {dict(outcomes)}; runs {len(durable.runs)}, next runs "
        f"replaced {sum(1 for a in answers if a[11])}, dropped by a stop "
        f"{sum(1 for a in answers if a[10])}; burst requests {len(bursts)}; "
        f"limited {collections.Counter(a[7] or a[3] for a in answers if a[6] == 'limited')}, "
        f"cancels {collections.Counter(a[7] or a[3] for a in answers if a[6] == 'cancel')}, "
        f"slot terminates "
        f"{collections.Counter(a[2] for a in answers if a[6] == 'slot-terminate')}, "
        f"most active per key {most_active_per_key(durable)}, sweeps to drain {sweeps}"
        f"{f' (left: {left})' if left else ''}"
    )

    assert told[202] > 0 and faults > 0  # the run did start things and did break things
    # No start was ever accepted over an active execution: never two at once.
    assert durable.dropped_starts == []
    # Every 202 "started", first or given again, names the generation its own start (its
    # key's) created.
    for instance_id, token, code, _, _, _, _, outcome, *_ in answers:
        if code == 202 and outcome == "started":
            assert (instance_id, token) in created, (instance_id, token)
    # Run once more: no input ran twice; each one told buffered or debounced ran once,
    # unless replaced or dropped (as the stop's answer said); none began before its time.
    runs = collections.Counter(value["items"][0] for _, _, value, _ in durable.runs)
    assert max(runs.values()) == 1
    began = {run_id: moment for _, run_id, _, moment in durable.runs if run_id}
    dropped = {answer[10] for answer in answers if answer[10]}
    replaced = {answer[11] for answer in answers if answer[11]}
    told_next = [a for a in answers if a[7] in ("buffered", "debounced")]
    assert told_next and outcomes["debounced"] and outcomes["buffered"] and bursts
    for answer in told_next:
        token, request, due = answer[1], answer[8], answer[9]
        if request not in dropped | replaced:
            # A loss prints the answer whole, and every Stop of its id (code, problem,
            # dropped): a Stop that dropped it without saying so shows there.
            stops = [
                (a[2], a[3], a[10]) for a in answers if a[0] == answer[0] and a[6] == "stopper"
            ]
            assert runs[token] == 1, f"{answer}; stops of {answer[0]}: {stops}"
        if due and request in began:
            assert began[request] >= parse_time(due), answer
    # No key (no token) started more than one generation.
    starts_per_token = collections.Counter(value["items"][0] for _, value in durable.created)
    assert max(starts_per_token.values()) == 1
    # Every generation was created by one caller, who was not told it did not start.
    for _, token in created:
        answer = by_token[token]  # every caller waits for its answer before it stops
        assert answer[2] == 202 or answer[3] in MAY_HAVE_STARTED | NEITHER, answer
    # A retry after a 202 (treated as lost) gets that 202 again, unless a newer execution
    # took over meanwhile; 503s in between say nothing.
    assert keyed
    for token in keyed:
        said = [a for a in answers if a[1] == token and a[2] != 503]
        for first, then in zip(said, said[1:], strict=False):
            if first[2] == 202 and not first[5]:
                assert (then[2] == 202 and then[5]) or then[3] in NEITHER, (first, then)
    # "Superseded" is told only after a later start or next run of the id: never about
    # the id's latest start, however close in time (createdTime is whole seconds).
    order = [(instance_id, value["items"][0]) for instance_id, value in durable.created]
    handed_over = {a[0] for a in answers if a[7] in ("buffered", "debounced")}
    for answer in answers:
        instance_id, token = answer[0], answer[1]
        if answer[3] in NEITHER and (instance_id, token) in created:
            later = order[order.index((instance_id, token)) + 1 :]
            assert instance_id in handed_over or any(i == instance_id for i, _ in later), answer
    # Every key's last answer is definite, and true of what the key did.
    for token in keyed:
        instance_id, _, code, kind, *_ = by_token[token]
        assert code != 503 and kind != "idempotency-key-in-progress", by_token[token]
        if code != 202 and kind not in NEITHER:  # a refusal: the key started nothing
            assert (instance_id, token) not in created, by_token[token]
    # A limit per key: never more than 3 of a key at any moment; every request told queued
    # or started ran exactly once, unless a cancel's answer said it was cancelled; the
    # key's queue gave slots in the order its requests were queued.
    limited = [a for a in answers if a[6] == "limited"]
    assert any(a[7] == "queued" for a in limited) and any(a[7] == "started" for a in limited)
    assert all(most <= LIMIT for most in most_active_per_key(durable).values())
    from tests.support.app import app, root_of

    root = root_of(app)
    queues = {key: await root.queues().read("TestHubName", key) for key in LIMIT_KEYS}
    assert not left, f"the sweep did not drain the queues in 60 s: {left}"
    cancels = [a for a in answers if a[6] == "cancel"]
    cancelled = {a[8] for a in cancels if a[2] == 200}
    # A cancel whose answer was lost may have cancelled its request (the answer says so).
    maybe_cancelled = {a[8] for a in cancels if a[3] in MAY_HAVE_ACTED}
    for answer in limited:
        if answer[2] == 202 and answer[8] not in cancelled:
            # A terminated slot may end a run that began, or one that had not yet: that
            # key's requests run at most once; the other key's exactly once. (The story
            # is told only when the assertion fails.)
            at_most = answer[12] == TERMINATED_KEY or answer[8] in maybe_cancelled
            assert runs[answer[1]] == 1 or (at_most and runs[answer[1]] == 0), request_story(
                answer, answers, queues[answer[12]], durable
            )
    # A request told it did nothing never ran: every answer under its token refused it (no
    # 202, and nothing that says it may have happened), so its input never ran.
    per_token = collections.defaultdict(list)
    for answer in answers:
        if answer[1] and answer[6] not in ("cancel", "stopper", "slot-terminate"):
            per_token[answer[1]].append(answer)
    for token, said in per_token.items():
        if all(a[2] != 202 and a[3] not in MAY_HAVE_ACTED for a in said):
            assert runs[token] == 0 and token not in starts_per_token, said
    # Slots were terminated (how many were accepted depends on the faults: the report says).
    assert any(a[6] == "slot-terminate" for a in answers)
    # A Stop or terminate never names as dropped a run that then began.
    assert not dropped & set(began), dropped & set(began)
    for key, queue in queues.items():
        given = list(dict.fromkeys(r for r, _ in queue.started)) if queue else []
        queued = [a for a in limited if a[12] == key and a[7] == "queued"]
        for first in queued:
            for then in queued:
                if first[14] < then[13] and first[8] in given and then[8] in given:
                    assert given.index(first[8]) < given.index(then[8]), (first, then)
    # Only the documented answers, never an internal error.
    # (404: a stopper asked to stop an id not started yet; 422 only for a reused key: never;
    # 200: a cancel.)
    assert set(told) <= {200, 202, 404, 409, 502, 503}, told
