"""Bursts of next runs for one id: the rate at which bufferOne and debounced requests are
answered without a 503, at the Durable double's event pickup delays.

The instance of the id runs on (it never completes), and the double takes each
``NextRun`` event ``pickup`` seconds after it arrives, as the Azure Storage backend does
when it polls its control queues (up to ``maxQueuePollingInterval``, 30 s, when idle).
Requests are sent open loop, at a fixed rate for a fixed time, each as the host calls
HttpStartSingle; the rate doubles until a step has a 503 (``lock-busy``, or
``next-run-outcome-unknown`` when the instance does not show in time that it took the
input). The table gives, per mode and pickup delay, the highest rate with no 503, the
answer times there, and what the next rate got.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, List, Optional, Sequence, Tuple

import azure.functions as func

from tests.support.durable_double import DurableDouble
from tests.support.requests import start_request

Starter = Callable[[func.HttpRequest, str], Awaitable[func.HttpResponse]]

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


async def burst(
    durable: DurableDouble,
    starter: Starter,
    pickups: Sequence[float],
    rates: Sequence[float],
    seconds: float,
    settle: Callable[[], Awaitable[Any]],
) -> str:
    """The burst table: for each mode and pickup delay, the rate ladder ``rates`` held
    ``seconds`` each until a step is not clean. ``settle`` waits for the app's background
    work between steps."""
    rows = []
    serial = 0
    for mode, query in MODES.items():
        for pickup in pickups:
            durable.reset(next_run_delay=pickup, complete_after=None)
            serial += 1
            instance_id = f"burst-{serial}"
            request = start_request("SingletonOrchestrator", instance_id, {"items": ["x"]})
            first = await starter(request, durable.starter())
            assert first.status_code == 202, first.get_body()
            best: Optional[Step] = None
            failed: Optional[Step] = None
            for rate in rates:
                step = await _step(starter, durable.starter(), instance_id, query, rate, seconds)
                await settle()
                if not step.clean:
                    failed = step
                    break
                best = step
            rows.append(_row(mode, pickup, best, failed))
    header = (
        "| mode | pickup delay | highest rate with no 503 (req/s) | p50 ms | p99 ms "
        "| the next rate got |\n|---|---:|---:|---:|---:|---|\n"
    )
    return (
        f"## Bursts of next runs for one id\n\n"
        f"Open-loop requests for one running instance, {seconds:g} s per rate, the rate "
        f"doubling from {rates[0]:g}/s; default settings (`SINGLETON_LOCK_WAIT_SECONDS`, "
        "`SINGLETON_NEXT_RUN_WAIT_SECONDS`). Goal of the next-run redesign (issue: debounce "
        "at the rate of real bursts): at least 200/s at every pickup delay.\n\n"
        + header
        + "\n".join(rows)
        + "\n"
    )


def _row(mode: str, pickup: float, best: Optional[Step], failed: Optional[Step]) -> str:
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
    return f"| {mode} | {pickup:g} s | {sustained} | {p50} | {p99} | {then} |"
