"""SingletonLimitSweep: a timer that keeps the queues of keys with a limit moving.

A slot whose instance ended without passing it on (failed, or terminated or purged outside
the app), or that a start reserved and then neither started nor gave back, is freed by
:func:`durable_singleton._limited.sweep_key`. Each tick lists the task hub's queues once
(their blob metadata says how many requests wait and how many reservations are
unconfirmed) and sweeps those with either: a key where nobody waits needs nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import azure.functions as func
from opentelemetry.trace import Span

from ._durable import DurableClient
from ._errors import NotStarted, OutcomeUnknown
from ._invocation import RootFactory, Told, enveloped
from ._limited import listed_queues, sweep_key
from ._root import Root

logger = logging.getLogger("durable_singleton.limit_sweep")

#: When the sweep runs (NCRONTAB, seconds first): every 30 seconds, so a slot freed
#: without a take passes to the queue's head within about that.
LIMIT_SWEEP_SCHEDULE = "*/30 * * * * *"
#: The most keys one tick sweeps (the oldest-listed first; the rest the next tick).
MAX_KEYS_PER_TICK = 100


@dataclass
class SweepReport:
    """What one tick did: the keys it swept, the heads it started, the keys it could not
    sweep (a dependency failed; the next tick tries again)."""

    swept: List[str] = field(default_factory=list)
    started: int = 0
    failed: List[str] = field(default_factory=list)


async def handle_limit_sweep(
    make_root: RootFactory, timer: func.TimerRequest, starter: str
) -> Optional[SweepReport]:
    """Run one tick of the sweep; log one line. Returns what it did (None when it could
    not run)."""
    report: Optional[SweepReport] = None

    async def tick(told: Told, span: Span) -> None:
        nonlocal report
        root = make_root()
        report = await sweep_all(root, root.durable(starter))
        told.status = 200
        told.decision = "sweep-done"
        told.extra += (
            f" swept={len(report.swept)} started={report.started} failed={len(report.failed)}"
        )

    told = Told(extra=f" trigger=timer past_due={str(timer.past_due).lower()}")
    await enveloped("limit-sweep", "SingletonLimitSweep", tick, told)
    return report


async def sweep_all(root: Root, durable: DurableClient) -> SweepReport:
    """Sweep the task hub's queues that have requests waiting or reservations
    unconfirmed, at most :data:`MAX_KEYS_PER_TICK`."""
    report = SweepReport()
    for key, orchestrator in await _keys_to_sweep(root, durable.task_hub):
        limit = root.catalog.limit(orchestrator)
        if limit is None:
            continue  # its orchestrator no longer has a limit (or is no longer the app's)
        try:
            report.started += await sweep_key(orchestrator, key, limit, durable, root)
        except (NotStarted, OutcomeUnknown) as error:
            logger.warning("The queue of a key could not be swept (%s).", type(error).__name__)
            report.failed.append(key)
            continue
        report.swept.append(key)
    return report


async def _keys_to_sweep(root: Root, task_hub: str) -> List[Tuple[str, str]]:
    """The keys to sweep, each with its orchestrator, from the listing's blob metadata
    alone (sweep_key reads each queue itself)."""
    keys = []
    for key, metadata in await listed_queues(root, task_hub):
        if metadata.get("waiting", "1") != "0" or metadata.get("unconfirmed", "1") != "0":
            keys.append((key, metadata.get("orchestrator", "")))
            if len(keys) >= MAX_KEYS_PER_TICK:
                break
    return keys
