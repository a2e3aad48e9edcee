"""Bursts of next runs for one id: the rate at which bufferOne and debounced requests are
answered without a 503, at the Durable double's event pickup delays.

The instance of the id runs on (it never completes), and the double takes each event
``pickup`` seconds after it arrives, as the Azure Storage backend does when it polls its
control queues (up to ``maxQueuePollingInterval``, 30 s, when idle). Requests are sent
open loop, at a fixed rate for a fixed time, each as the host calls HttpStartSingle; the
rate doubles until a step has a 503. The table gives, per mode and pickup delay, the
highest rate with no 503, the answer times there, what the next rate got, and the p50
of a conflict answer (the default policy's 409) for the same id beside it. Below it, what
Azurite and the next-run store serve alone: changes of one id's next-run channel by 16
concurrent writers, closed loop.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, List, Optional, Sequence, Tuple

import azure.functions as func
from azure.storage.blob.aio import BlobServiceClient

from durable_singleton._next_run import Channel, offer
from durable_singleton._next_run_store import NextRunStore
from tests.support.durable_double import DurableDouble
from tests.support.requests import start_request

Starter = Callable[[func.HttpRequest, str], Awaitable[func.HttpResponse]]

#: The rate the issue asks for, for one id: its answer times are shown on their own.
GOAL = 200.0

#: The query of each mode: a debounced request, and a bufferOne one.
MODES = {"debounce (30 s)": "debounceSeconds=30", "bufferOne": "onConflict=bufferOne"}


@dataclass
class Step:
    """One rate held for a while: every answer's status (or problem kind) and time."""

    rate: float
    kinds: "collections.Counter[str]" = field(default_factory=collections.Counter)
    latencies_ms: List[float] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Whether no answer was a 503 (or any failure)."""
        return set(self.kinds) <= {"202"}

    def percentile(self, q: float) -> float:
        """The ``q`` quantile of the answer times (ms)."""
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def _one(starter: Starter, binding: str, instance_id: str, query: str) -> Tuple[str, float]:
    request = start_request("SingletonOrchestrator", instance_id, {"items": ["x"]}, query)
    began = time.perf_counter()
    response = await starter(request, binding)
    elapsed = (time.perf_counter() - began) * 1000
    if response.status_code < 300:
        return str(response.status_code), elapsed
    kind = json.loads(response.get_body())["type"].rsplit(":", 1)[1]
    return f"{response.status_code} {kind}", elapsed


async def _step(
    starter: Starter, binding: str, instance_id: str, query: str, rate: float, seconds: float
) -> Step:
    """Send ``rate`` requests a second for ``seconds``, open loop; wait for every answer."""
    step = Step(rate)
    count = max(1, int(rate * seconds))
    began = time.perf_counter()
    tasks = []
    for n in range(count):
        await asyncio.sleep(max(0.0, began + n / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(_one(starter, binding, instance_id, query)))
    for kind, elapsed in await asyncio.gather(*tasks):
        step.kinds[kind] += 1
        step.latencies_ms.append(elapsed)
    return step


async def _first_start(starter: Starter, binding: str, instance_id: str) -> None:
    """Start the id whose bursts follow, as a client would: a 503 (Azurite still busy with
    an earlier phase's backlog) is tried again after its Retry-After, for up to a minute."""
    deadline = time.monotonic() + 60.0
    while True:
        request = start_request("SingletonOrchestrator", instance_id, {"items": ["x"]})
        first = await starter(request, binding)
        if first.status_code == 202:
            return
        if first.status_code != 503 or time.monotonic() > deadline:
            raise AssertionError(first.get_body())
        await asyncio.sleep(float(first.headers.get("Retry-After", "1")))


async def _conflict_p50(starter: Starter, binding: str, instance_id: str) -> float:
    """The p50 answer time (ms) of 40 default-policy requests for the running id (409)."""
    step = Step(0.0)
    for _ in range(40):
        kind, elapsed = await _one(starter, binding, instance_id, "")
        step.kinds[kind] += 1
        step.latencies_ms.append(elapsed)
    assert set(step.kinds) == {"409 instance-active"}, step.kinds
    return step.percentile(0.5)


def _offering(request: str, channel: Any) -> Any:
    return offer(channel, request, {"items": ["x"]}, None).channel, None


async def storage_ceiling(
    connection_string: str, container: str, writers: int, seconds: float
) -> str:
    """What Azurite serves of the same storage calls: ``writers`` concurrent loops each
    changing one channel (a read and a conditional write, again on a conflict) as an
    offer does, for ``seconds``."""
    async with BlobServiceClient.from_connection_string(connection_string) as service:
        store = NextRunStore(service.get_container_client(container), 5.0)
        await store.change("ceiling", "one-id", lambda _: (Channel("run"), None))
        done = 0
        deadline = time.perf_counter() + seconds

        async def writer(n: int) -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                request = f"w{n}-{done}"
                await store.change("ceiling", "one-id", functools.partial(_offering, request))
                done += 1

        began = time.perf_counter()
        await asyncio.gather(*[writer(n) for n in range(writers)])
        rate = done / (time.perf_counter() - began)
    return (
        f"Azurite and the next-run store alone (no app, no Durable call): {rate:.0f} "
        f"channel changes/s for one id ({writers} concurrent writers, closed loop, "
        f"{seconds:g} s; changes made at once written together, as the app's are).\n"
    )


async def burst(
    durable: DurableDouble,
    starter: Starter,
    pickups: Sequence[float],
    rates: Sequence[float],
    seconds: float,
    settle: Callable[[], Awaitable[Any]],
    storage: Tuple[str, str],
) -> str:
    """The burst table: for each mode and pickup delay, the rate ladder ``rates`` held
    ``seconds`` each until a step is not clean. ``settle`` waits for the app's background
    work between steps; ``storage`` is the app's connection string and lock container
    (where the double, playing the job, takes next runs from)."""
    rows = []
    serial = 0
    for mode, query in MODES.items():
        for pickup in pickups:
            durable.reset(event_delay=pickup, complete_after=None)
            durable.use_storage(*storage)
            serial += 1
            instance_id = f"burst-{serial}"
            await settle()
            await _first_start(starter, durable.starter(), instance_id)
            conflict = await _conflict_p50(starter, durable.starter(), instance_id)
            best: Optional[Step] = None
            failed: Optional[Step] = None
            at_goal: Optional[Step] = None
            for rate in rates:
                step = await _step(starter, durable.starter(), instance_id, query, rate, seconds)
                await settle()
                if rate == GOAL:
                    at_goal = step
                if not step.clean:
                    failed = step
                    break
                best = step
            rows.append(_row(mode, pickup, best, failed, conflict, at_goal))
    header = (
        "| mode | pickup delay | highest rate with no 503 (req/s) | p50 ms | p99 ms "
        f"| the next rate got | at {GOAL:g}/s: p50 / p99 ms | 409 p50 ms |\n"
        "|---|---:|---:|---:|---:|---|---:|---:|\n"
    )
    return (
        f"## Bursts of next runs for one id\n\n"
        f"Open-loop requests for one running instance, {seconds:g} s per rate, the rate "
        f"doubling from {rates[0]:g}/s; default settings. A request writes its input into "
        "the id's next-run channel and is answered; it never waits for the instance. Goal: "
        "at least 200/s at every pickup delay (or 80% of what Azurite serves of the same "
        "storage calls, below).\n\n" + header + "\n".join(rows) + "\n"
    )


def _row(
    mode: str,
    pickup: float,
    best: Optional[Step],
    failed: Optional[Step],
    conflict: float,
    at_goal: Optional[Step],
) -> str:
    if best is None:
        sustained, p50, p99 = "< " + (f"{failed.rate:g}" if failed else "?"), "-", "-"
    else:
        sustained = f"{best.rate:g}"
        p50, p99 = f"{best.percentile(0.5):.0f}", f"{best.percentile(0.99):.0f}"
    if failed is None:
        then = "(not reached: the ladder ended clean)"
    else:
        got = ", ".join(f"{n} {k}" for k, n in sorted(failed.kinds.items()))
        then = f"{failed.rate:g}/s: {got}; max {max(failed.latencies_ms):.0f} ms"
    goal = "-"
    if at_goal is not None:
        goal = f"{at_goal.percentile(0.5):.0f} / {at_goal.percentile(0.99):.0f}"
    return (
        f"| {mode} | {pickup:g} s | {sustained} | {p50} | {p99} | {then} | {goal} "
        f"| {conflict:.0f} |"
    )
