"""The cost of a start with a limit per key beside a singleton start, measured in-process
against the Durable double and Azurite as benchmarks/run.py measures the singleton
paths: latency, Durable API calls and Blob calls per request (the Blob calls counted in
the Storage SDK's pipeline; the slot's own hand-over at its run's end is the job's
activity, not a request's, and is counted apart)."""

from __future__ import annotations

import statistics
import time
from typing import Any, Awaitable, Callable, List, Tuple

import azure.functions as func

from tests.support.durable_double import DurableDouble
from tests.support.requests import limited_request, start_request

#: SingletonOrchestrator's limit per key (its module's concurrency_limit).
LIMIT = 3
#: Queued requests measured per key (SINGLETON_QUEUE_BOUND is 100 by default).
PER_FULL_KEY = 50

Call = Callable[[func.HttpRequest, str], Awaitable[func.HttpResponse]]


async def limited_costs(
    durable: DurableDouble,
    single: Call,
    limited: Call,
    settle: Callable[[], Awaitable[Any]],
    blob_calls: Callable[[], int],
    count: int,
) -> str:
    """The table: a singleton start, a start with a limit that starts (a fresh key), one
    that queues (its key's slots busy), each ``count`` times in sequence."""
    starter = durable.starter()
    durable.reset(orchestrators={"SingletonOrchestrator"})
    body = {"items": ["x"]}
    serial = iter(range(10**9))

    def single_request() -> func.HttpRequest:
        return start_request("SingletonOrchestrator", f"single-{next(serial)}", body)

    def fresh_key() -> func.HttpRequest:
        return limited_request("SingletonOrchestrator", f"fresh-{next(serial)}", body)

    # Keys whose slots are busy, so that every measured request queues; a new one every
    # PER_FULL_KEY requests, well within the queue's bound.
    full_keys = [f"full-{next(serial)}" for _ in range(-(-count // PER_FULL_KEY))]
    for full_key in full_keys:
        for _ in range(LIMIT):
            await limited(limited_request("SingletonOrchestrator", full_key, body), starter)
    await settle()
    queued_keys = iter([key for key in full_keys for _ in range(PER_FULL_KEY)])

    def queued() -> func.HttpRequest:
        return limited_request("SingletonOrchestrator", next(queued_keys), body)

    rows = []
    for label, make, call, expected in [
        ("singleton start (a new id)", single_request, single, "started"),
        ("start with a limit: a slot is free (a new key)", fresh_key, limited, "started"),
        ("start with a limit: queued (the key's slots busy)", queued, limited, "queued"),
    ]:
        latencies, durable_calls, blobs = await _measure(
            durable, call, make, starter, settle, blob_calls, count, expected
        )
        rows.append(
            f"| {label} | {statistics.median(latencies):.1f} | "
            f"{_percentile(latencies, 95):.1f} | {durable_calls:.2f} | {blobs:.2f} |"
        )
    return "\n".join(
        [
            "## A limit per key: what a start costs",
            "",
            f"{count} sequential requests per row, Durable double without latency, Azurite. "
            "A slot's hand-over at its run's end is the job's activity "
            "(SingletonNextRun take): 1 channel read, 1 queue read and 1 queue write, "
            "and no request waits for it.",
            "",
            "| request | p50 ms | p95 ms | Durable calls/req | Blob calls/req |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )


async def _measure(
    durable: DurableDouble,
    call: Call,
    make: Callable[[], func.HttpRequest],
    starter: str,
    settle: Callable[[], Awaitable[Any]],
    blob_calls: Callable[[], int],
    count: int,
    expected: str,
) -> Tuple[List[float], float, float]:
    requests = [make() for _ in range(count)]
    durable_before, blob_before = sum(durable.calls.values()), blob_calls()
    latencies = []
    for request in requests:
        began = time.perf_counter()
        answer = await call(request, starter)
        latencies.append((time.perf_counter() - began) * 1000)
        assert answer.status_code == 202, answer.get_body()
        assert expected.encode() in answer.get_body(), answer.get_body()
    await settle()  # their background storage calls belong to these requests
    return (
        latencies,
        (sum(durable.calls.values()) - durable_before) / count,
        (blob_calls() - blob_before) / count,
    )


def _percentile(values: List[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]
