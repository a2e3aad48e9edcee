"""What the singleton guarantee costs: HttpStartSingle next to the seed's check-then-start.

Both starters are driven in-process, as the host calls them, against the same Durable
double and the same Azurite. Durable API calls are counted by the double; Blob Storage
calls by a policy in the storage SDK's own pipeline. Run ``bash scripts/benchmark.sh``
(``--quick`` for the small run CI uses); see ``--help``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

import azure.functions as func

from benchmarks.burst import burst, storage_ceiling
from benchmarks.limited import limited_costs
from tests.support import seed_starter
from tests.support.app import app, settled
from tests.support.azurite import ACCOUNT, ACCOUNT_KEY, Azurite
from tests.support.blob_counter import RequestCounter, counted_app
from tests.support.clients import close_app_clients
from tests.support.durable_double import DurableDouble
from tests.support.requests import start_request

ROOT = Path(__file__).resolve().parent.parent
#: The bursts' own process ends within this (a full run's bursts take about 10 min).
BURSTS_TIMEOUT_SECONDS = 1800
Starter = Callable[[func.HttpRequest, str], Awaitable[func.HttpResponse]]
#: Every Blob Storage request of the app under measurement is counted here.
COUNTER = RequestCounter()
#: The v1 app's SingletonApp (HttpStartSingle's ``main`` is its ``http_start``), counted.
OURS = counted_app(app, COUNTER)
STARTERS: Dict[str, Starter] = {"ours": OURS.http_start, "seed": seed_starter.main}
PATHS = ("fresh start", "conflict", "restart after Completed")
#: Ours only (the seed has no Idempotency-Key), each beside the keyless path it compares to.
KEYED_PATHS = {
    "fresh start with a key": "fresh start",
    "retry with the key (answer given again)": "conflict",
}


@dataclass
class PathResult:
    """Latencies and calls per request of one path through one starter."""

    latencies_ms: List[float]
    durable_calls: float
    blob_calls: float
    errors: int = 0
    #: CPU milliseconds per request of the thread that runs the starter (the Durable
    #: double serves from a thread of its own, Azurite is another process).
    cpu_ms: float = 0.0

    def percentile(self, p: int) -> float:
        """The p-th percentile latency, in milliseconds."""
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[p - 1]


@dataclass
class RaceResult:
    """N callers for one id at once, through one starter."""

    told_started: int
    refused: int
    errors: int
    starts_accepted: int
    starts_dropped: int
    wall_ms: float


@dataclass
class Run:
    """Everything measured at one Durable latency."""

    latency_ms: float
    paths: Dict[str, Dict[str, PathResult]] = field(default_factory=dict)
    races: Dict[int, Dict[str, RaceResult]] = field(default_factory=dict)
    throughput: Dict[int, Dict[str, float]] = field(default_factory=dict)


class Bench:
    """The shared double, Azurite and counters, and the measurements on them."""

    def __init__(self, durable: DurableDouble, counter: RequestCounter):
        """Measure against ``durable`` with Blob calls counted by ``counter``."""
        self.durable = durable
        self.counter = counter
        self.starter = durable.starter()
        self._serial = 0

    def fresh_id(self, label: str) -> str:
        """An id no instance and no lock blob has had."""
        self._serial += 1
        return f"{label}-{self._serial}"

    @staticmethod
    def request(instance_id: str, key: Optional[str] = None) -> func.HttpRequest:
        """A start request (with ``key`` as its Idempotency-Key), built before any clock
        starts: the host builds it, not the starter."""
        headers = None if key is None else {"Idempotency-Key": key}
        return start_request(
            "SingletonOrchestrator", instance_id, {"items": ["x"]}, headers=headers
        )

    async def call(self, starter: Starter, request: func.HttpRequest) -> Optional[int]:
        """One request; the status code, or None where the starter raised (the host's 500)."""
        try:
            code: int = (await starter(request, self.starter)).status_code
            return code
        except Exception:
            return None

    async def path(self, name: str, starter: Starter, path: str, count: int) -> PathResult:
        """Time ``count`` sequential requests down ``path``."""
        ids = [self.fresh_id(f"{name}-{path[:5]}") for _ in range(count)]
        if path == "conflict":
            # An instance the app started (as in production), still running.
            ids = [ids[0]] * count
            await self.call(STARTERS["ours"], self.request(ids[0]))
            await settled(OURS)
            self.durable.put(ids[0], "Running")
        elif path == "restart after Completed":
            for instance_id in set(ids):  # a first start makes the instance (and lock blob)
                await self.call(STARTERS["ours"], self.request(instance_id))
            await settled(OURS)
            for instance_id in set(ids):
                # Its run ends as SingletonOrchestrator's does: it takes its next run
                # (there is none: its channel says ended) and completes.
                self.durable.end_run(instance_id)
        keyed = path in KEYED_PATHS
        if path == "retry with the key (answer given again)":
            for instance_id in ids:  # the first request with each key
                await self.call(OURS.http_start, self.request(instance_id, f"key-{instance_id}"))
            await settled(OURS)
        requests = [self.request(i, f"key-{i}" if keyed else None) for i in ids]
        durable_before = sum(self.durable.calls.values())
        blob_before = self.counter.requests
        latencies, errors = [], 0
        cpu_before = time.thread_time()
        for request in requests:
            began = time.perf_counter()
            code = await self.call(starter, request)
            latencies.append((time.perf_counter() - began) * 1000)
            errors += code not in (202, 409)
        await settled(OURS)  # their storage calls belong to these requests
        return PathResult(
            latencies,
            (sum(self.durable.calls.values()) - durable_before) / count,
            (self.counter.requests - blob_before) / count,
            errors,
            (time.thread_time() - cpu_before) * 1000 / count,
        )

    async def race(self, name: str, starter: Starter, callers: int) -> RaceResult:
        """``callers`` requests for one fresh id at once."""
        instance_id = self.fresh_id(f"race-{name}-{callers}")
        accepted = len(self.durable.accepted_starts)
        dropped = len(self.durable.dropped_starts)
        requests = [self.request(instance_id) for _ in range(callers)]
        began = time.perf_counter()
        codes = await asyncio.gather(*[self.call(starter, r) for r in requests])
        wall = (time.perf_counter() - began) * 1000
        return RaceResult(
            codes.count(202),
            codes.count(409),
            sum(c not in (202, 409) for c in codes),
            len(self.durable.accepted_starts) - accepted,
            len(self.durable.dropped_starts) - dropped,
            wall,
        )

    async def throughput(self, name: str, starter: Starter, callers: int) -> float:
        """Requests per second for ``callers`` distinct fresh ids at once."""
        requests = [self.request(self.fresh_id(f"many-{name}")) for _ in range(callers)]
        began = time.perf_counter()
        await asyncio.gather(*[self.call(starter, r) for r in requests])
        return callers / (time.perf_counter() - began)

    async def memory(self, requests: int, ids: int = 200, batch: int = 50) -> Dict[str, float]:
        """Traced memory after a warm-up and after ``requests`` restarts (lock + start)."""
        pool = [self.fresh_id("mem") for _ in range(ids)]
        self.durable.latency = self.durable.start_check_delay = 0.0

        async def one_batch(offset: int) -> None:
            chunk = [pool[(offset + i) % ids] for i in range(batch)]
            for instance_id in chunk:  # finished, so every request takes the full path
                self.durable.put(instance_id, "Completed")
            await asyncio.gather(*[self.call(STARTERS["ours"], self.request(i)) for i in chunk])
            await settled(OURS)
            # Keep the double's own logs from growing: only the app is measured.
            self.durable.accepted_starts.clear()
            self.durable.created.clear()
            self.durable.runs.clear()
            self.durable.calls.clear()

        warm_up = min(1000, requests // 5)
        tracemalloc.start()
        for offset in range(0, warm_up, batch):
            await one_batch(offset)
        gc.collect()
        after_warm_up = tracemalloc.get_traced_memory()[0]
        for offset in range(warm_up, requests, batch):
            await one_batch(offset)
        gc.collect()
        at_end, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return {
            "requests": requests,
            "warm_up": warm_up,
            "growth_mib": (at_end - after_warm_up) / 2**20,
            "peak_mib": peak / 2**20,
            "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }


@dataclass
class LockProtocol:
    """The lock protocol of a fresh start alone (create the lock blob, take its lease,
    release it) against the benchmark's Azurite, ``at_once`` distinct blobs in flight:
    through a client that costs next to nothing, and through the storage SDK as the app
    builds it. Best rate of the rounds; CPU of the thread that runs the client."""

    at_once: int
    rounds: int
    plain_per_s: float
    plain_cpu_ms: float
    sdk_per_s: float
    sdk_cpu_ms: float


async def lock_protocol(azurite: Azurite, at_once: int, rounds: int = 5) -> LockProtocol:
    """Measure :class:`LockProtocol`.

    The plain client is aiohttp with a container SAS the storage SDK makes (no request
    is signed): it leaves Azurite the only limit, so no starter that makes these three
    calls for each new id can start more ids per second than ``plain_per_s`` here.
    """
    import datetime
    import uuid

    import aiohttp
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    from durable_singleton._settings import StorageConnection
    from durable_singleton._storage import blob_service_client

    container = f"protocol-{uuid.uuid4().hex[:12]}"
    sdk = blob_service_client(StorageConnection(connection_string=azurite.connection_string))
    await sdk.create_container(container)
    sas = generate_container_sas(
        ACCOUNT,
        container,
        account_key=ACCOUNT_KEY,
        permission=ContainerSasPermissions(read=True, write=True, create=True),
        expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1),
    )
    base = f"http://127.0.0.1:{azurite.port}/{ACCOUNT}/{container}"
    version = {"x-ms-version": "2021-08-06"}

    async def plain(session: aiohttp.ClientSession, name: str) -> None:
        lease = {**version, "x-ms-lease-duration": "15", "x-ms-lease-action": "acquire"}
        lease["x-ms-proposed-lease-id"] = str(uuid.uuid4())
        release = {**version, "x-ms-lease-action": "release"}
        release["x-ms-lease-id"] = lease["x-ms-proposed-lease-id"]
        calls = [
            (f"{base}/{name}?{sas}", {**version, "x-ms-blob-type": "BlockBlob"}, 201),
            (f"{base}/{name}?comp=lease&{sas}", lease, 201),
            (f"{base}/{name}?comp=lease&{sas}", release, 200),
        ]
        for url, headers, expected in calls:
            async with session.put(url, headers=headers, data=b"") as response:
                await response.read()
                if response.status != expected:
                    raise RuntimeError(f"Azurite answered {response.status} to {url}")

    async def through_sdk(name: str) -> None:
        blob = sdk.get_blob_client(container, name)
        await blob.upload_blob(b"", overwrite=False)
        lease = await blob.acquire_lease(lease_duration=15)
        await lease.release()

    async def best(one: Callable[[str], Awaitable[None]], label: str) -> Tuple[float, float]:
        rate, cpu = 0.0, time.thread_time()
        for round_ in range(rounds):
            began = time.perf_counter()
            await asyncio.gather(*[one(f"{label}-{round_}-{n}") for n in range(at_once)])
            rate = max(rate, at_once / (time.perf_counter() - began))
        return rate, (time.thread_time() - cpu) * 1000 / (rounds * at_once * 3)

    async with aiohttp.ClientSession() as session:
        plain_rate, plain_cpu = await best(lambda name: plain(session, name), "plain")
    sdk_rate, sdk_cpu = await best(through_sdk, "sdk")
    await sdk.close()
    return LockProtocol(at_once, rounds, plain_rate, plain_cpu, sdk_rate, sdk_cpu)


async def measure(bench: Bench, latency_ms: float, count: int, races: List[int]) -> Run:
    """Every path, race and throughput figure at one Durable latency."""
    # The Azure Storage provider's duplicate check spans storage round trips, so
    # the double's read-to-write window is one call's latency.
    bench.durable.reset(latency=latency_ms / 1000, start_check_delay=latency_ms / 1000)
    run = Run(latency_ms)
    for name, starter in STARTERS.items():
        run.paths[name] = {path: await bench.path(name, starter, path, count) for path in PATHS}
    for path in KEYED_PATHS:
        run.paths["ours"][path] = await bench.path("ours", OURS.http_start, path, count)
    for callers in races:
        run.races[callers] = {
            name: await bench.race(name, s, callers) for name, s in STARTERS.items()
        }
        run.throughput[callers] = {
            name: await bench.throughput(name, s, callers) for name, s in STARTERS.items()
        }
    return run


def machine() -> str:
    """One line about where the figures come from."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({model}), "
        f"Python {platform.python_version()}, Azurite for Blob Storage on loopback"
    )


def tables(
    repetitions: List[Tuple[List[Run], LockProtocol]],
    memory: Optional[Dict[str, float]],
    target_latency: float,
) -> str:
    """The Markdown tables the command prints and the README shows: every figure of the
    last repetition, and the targets in each of them."""
    out: List[str] = []
    runs = repetitions[-1][0]
    if len(repetitions) > 1:
        out.append(
            f"\nThe measurements below were repeated {len(repetitions)} times in this run; "
            "the tables show the last, the targets each.\n"
        )
    for run in runs:
        out.append(f"\n### Durable double answering in {run.latency_ms:g} ms per call\n")
        out.append(
            "| path | starter | p50 ms | p95 ms | p99 ms | CPU ms/req | Durable calls/req | "
            "Blob calls/req | ours/seed p50 | p95 | p99 | CPU |"
        )
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for path in PATHS:
            ours, seed = run.paths["ours"][path], run.paths["seed"][path]
            for name, result in (("ours", ours), ("seed", seed)):
                ratios = (
                    "| "
                    + " | ".join(
                        f"{ours.percentile(p) / seed.percentile(p):.2f}x" for p in (50, 95, 99)
                    )
                    + f" | {ours.cpu_ms / seed.cpu_ms:.2f}x"
                    if name == "ours"
                    else "| | | |"
                )
                out.append(
                    f"| {path} | {name} | {result.percentile(50):.1f} | "
                    f"{result.percentile(95):.1f} | {result.percentile(99):.1f} | "
                    f"{result.cpu_ms:.2f} | {result.durable_calls:.2f} | "
                    f"{result.blob_calls:.2f} {ratios} |"
                )
        out.append(
            "\n| ours, with an Idempotency-Key | p50 ms | p95 ms | p99 ms | Durable calls/req "
            "| Blob calls/req | p50 / ours without a key |"
        )
        out.append("|---|---:|---:|---:|---:|---:|---|")
        for path, plain in KEYED_PATHS.items():
            result, base = run.paths["ours"][path], run.paths["ours"][plain]
            out.append(
                f"| {path} | {result.percentile(50):.1f} | {result.percentile(95):.1f} | "
                f"{result.percentile(99):.1f} | {result.durable_calls:.2f} | "
                f"{result.blob_calls:.2f} | {result.percentile(50) / base.percentile(50):.2f}x "
                f"of {plain} |"
            )
        out.append(
            "\n| N callers, one id | starter | told started | 409 | errors | "
            "starts accepted by Durable API | of which dropped | wall ms | "
            "throughput, N distinct ids (req/s) |"
        )
        out.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
        for callers, by_name in run.races.items():
            for name, race in by_name.items():
                out.append(
                    f"| {callers} | {name} | {race.told_started} | {race.refused} | "
                    f"{race.errors} | {race.starts_accepted} | {race.starts_dropped} | "
                    f"{race.wall_ms:.0f} | {run.throughput[callers][name]:.0f} |"
                )
    out.append(targets(repetitions, memory, target_latency))
    out.append(protocol_table([protocol for _, protocol in repetitions]))
    return "\n".join(out)


def targets(
    repetitions: List[Tuple[List[Run], LockProtocol]],
    memory: Optional[Dict[str, float]],
    target_latency: float,
) -> str:
    """The targets table: each target with its figure in every repetition (separated by
    " · ") and in how many it was met."""
    by_repetition = []
    for runs, protocol in repetitions:
        target = next(r for r in runs if r.latency_ms == target_latency)
        fastest = min(runs, key=lambda r: r.latency_ms)
        by_repetition.append(target_rows(target, fastest, protocol.plain_per_s))
    lines = [
        f"\n### Targets (Durable double at {target_latency:g} ms per call)\n",
        "| target | figure | met |",
        "|---|---|---|",
    ]
    for index, (wording, _, _) in enumerate(by_repetition[0]):
        figures = [rows[index][1] for rows in by_repetition]
        met = sum(rows[index][2] for rows in by_repetition)
        verdict = (
            "yes"
            if met == len(by_repetition)
            else "**no**"
            if met == 0
            else f"in {met} of {len(by_repetition)}"
        )
        lines.append(f"| {wording} | {' · '.join(figures)} | {verdict} |")
    if memory is None:  # --http-only
        return "\n".join(lines)
    lines.append(
        f"| Memory growth over {memory['requests']:,} requests: a few MiB at most (< 4) | "
        f"{memory['growth_mib']:+.2f} MiB after a {memory['warm_up']:,}-request "
        f"warm-up (peak traced {memory['peak_mib']:.1f} MiB, max RSS "
        f"{memory['maxrss_mib']:.0f} MiB) | {'yes' if memory['growth_mib'] < 4 else '**no**'} |"
    )
    return "\n".join(lines)


def protocol_table(protocols: List[LockProtocol]) -> str:
    """The lock protocol alone (:func:`lock_protocol`), one row per repetition."""
    lines = [
        f"\n### The lock protocol alone: {protocols[0].at_once} new ids at once\n",
        "Create the lock blob, take its lease, release it (a fresh start's Blob calls) against "
        "the same Azurite: through plain aiohttp with a SAS (next to no client cost: Azurite "
        "is the limit, shared with the starter on this machine's cores; it is the ceiling in "
        "the throughput row), and through the storage SDK as the app builds its client. "
        f"Best of {protocols[0].rounds} rounds per repetition; CPU per Blob call of the "
        "client's thread.\n",
        "| repetition | plain: protocols/s | plain: CPU ms/call | SDK: protocols/s | "
        "SDK: CPU ms/call |",
        "|---:|---:|---:|---:|---:|",
    ]
    for number, protocol in enumerate(protocols, start=1):
        lines.append(
            f"| {number} | {protocol.plain_per_s:.0f} | {protocol.plain_cpu_ms:.2f} | "
            f"{protocol.sdk_per_s:.0f} | {protocol.sdk_cpu_ms:.2f} |"
        )
    return "\n".join(lines)


def target_rows(run: Run, fastest: Run, ceiling: float) -> List[Tuple[str, str, bool]]:
    """Each target, its figure and whether it is met, at the target latency (throughput
    at the fastest Durable double measured, 0 ms in the full run, beside the storage
    ceiling that bounds it here, :func:`lock_protocol`)."""
    ours, seed = run.paths["ours"], run.paths["seed"]

    def ratio(path: str) -> float:
        return ours[path].percentile(50) / seed[path].percentile(50)

    conflict = ours["conflict"]
    rows = [
        (
            "Conflict (an instance the app started): 1 Durable call, 0 Blob calls, "
            "p50 <= 1.05x seed",
            f"{conflict.durable_calls:.2f} / {conflict.blob_calls:.2f} / {ratio('conflict'):.2f}x",
            conflict.durable_calls == 1 and conflict.blob_calls == 0 and ratio("conflict") <= 1.05,
        ),
    ]
    for path in ("fresh start", "restart after Completed"):
        p99 = ours[path].percentile(99) / seed[path].percentile(99)
        rows.append(
            (
                f"{path.capitalize()}: p50 <= 1.15x seed, p99 <= 1.3x",
                f"{ratio(path):.2f}x, {p99:.2f}x",
                ratio(path) <= 1.15 and p99 <= 1.3,
            )
        )
    widest = max(fastest.throughput)
    rates = fastest.throughput[widest]
    rows.append(
        (
            f"Throughput, {widest} distinct ids at once: >= 0.5x seed",
            f"{rates['ours']:.0f} vs {rates['seed']:.0f} req/s = "
            f"{rates['ours'] / rates['seed']:.2f}x at {fastest.latency_ms:g} ms "
            f"(Azurite's ceiling {ceiling:.0f}/s = {ceiling / rates['seed']:.2f}x)",
            rates["ours"] / rates["seed"] >= 0.5,
        )
    )
    started = {n: (r["ours"].told_started, r["seed"].told_started) for n, r in run.races.items()}
    rows.append(
        (
            "Exactly one told started at every N (seed's count in brackets)",
            ", ".join(f"N={n}: {o} ({s})" for n, (o, s) in started.items()),
            all(o == 1 for o, _ in started.values()),
        )
    )
    if 50 in run.races:
        wall = run.races[50]["ours"].wall_ms
        one = ours["fresh start"].percentile(50)
        rows.append(
            (
                "50 racing callers all answered within 8x one fresh start",
                f"{wall:.0f} ms = {wall / one:.1f}x of {one:.1f} ms",
                wall <= 8 * one,
            )
        )
    return rows


def chart(runs: List[Run], path: Path) -> None:
    """p50/p99 by path for both starters, and race wall time by N, per latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(runs), 2, figsize=(12, 4 * len(runs)), squeeze=False)
    for row, run in zip(axes, runs, strict=True):
        left, right = row
        width = 0.2
        for k, (name, p) in enumerate([(n, p) for n in STARTERS for p in (50, 99)]):
            values = [run.paths[name][path].percentile(p) for path in PATHS]
            left.bar(
                [i + (k - 1.5) * width for i in range(len(PATHS))],
                values,
                width,
                label=f"{name} p{p}",
            )
        left.set_xticks(range(len(PATHS)), PATHS)
        left.set_ylabel("latency (ms)")
        left.set_title(f"Latency by path, Durable double {run.latency_ms:g} ms/call")
        left.legend()
        for name in STARTERS:
            ns = sorted(run.races)
            right.plot(ns, [run.races[n][name].wall_ms for n in ns], marker="o", label=name)
        right.set_xlabel("callers for one id at once (N)")
        right.set_ylabel("wall time until all answered (ms)")
        right.set_title(f"Race wall time, Durable double {run.latency_ms:g} ms/call")
        right.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)


#: The job before large passes were staged and chunked (commit a3c5bc0: one execution
#: per pass), measured once with this same driver on the same machine; that code no
#: longer exists to run, so its figures are kept here.
JOB_BASELINE = (
    "\nBefore (one execution per pass, commit a3c5bc0, same driver and machine): 9.76 ms per "
    "item at 100 items, 110.1 ms per item at 1,000 items; it grows with the pass, so 100,000 "
    "items would take about 300 hours (12 days) of replay."
)


def _job_table(
    first_column: str, inputs: Dict[int, Dict[str, Any]]
) -> Tuple[List[str], Dict[int, float], Dict[int, int]]:
    """Drive each job input to its end; return the table of what it cost (one row per
    key, named in ``first_column``), the orchestrator CPU ms per item by key, and the
    longest execution history (events) by key."""
    from tests.support.job_driver import drive

    rows = [
        f"| {first_column} | executions | episodes | longest history (events) | "
        "orchestrator CPU s | ms per item |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    per_item: Dict[int, float] = {}
    longest: Dict[int, int] = {}
    for key, input_ in inputs.items():
        items = len(input_["items"])
        run = drive(input_)
        assert run.output["processed"] == items, run.output
        per_item[key] = run.orchestrator_seconds / items * 1000
        longest[key] = run.longest_history
        rows.append(
            f"| {key:,} | {run.executions:,} | {run.episodes:,} | {run.longest_history} "
            f"| {run.orchestrator_seconds:.1f} | {per_item[key]:.2f} |"
        )
    return rows, per_item, longest


def job_cost(sizes: List[int]) -> str:
    """Orchestrator CPU per item for one pass of each size, through the replay engine."""
    rows, per_item, _ = _job_table(
        "items in the pass", {size: {"items": list(range(size))} for size in sizes}
    )
    out = [
        "\n### The job: orchestrator CPU per item (SDK replay engine, every episode "
        "replays its execution's history)\n",
        *rows,
    ]
    low, high = min(sizes), max(sizes)
    ratio = per_item[high] / per_item[low]
    out.append(
        f"\nTarget: per-item cost at {high:,} items within 2x of {low:,}: "
        f"{ratio:.2f}x, {'met' if ratio <= 2 else '**not met**'}."
    )
    out.append(JOB_BASELINE)
    return "\n".join(out)


def job_parallel(items: int, parallelisms: List[int], wall_items: int) -> str:
    """Orchestrator CPU per item and episodes by parallelism, and a pass's wall time
    with a 50 ms activity, through the replay driver."""
    from tests.support.job_driver import drive

    rows, per_item, _ = _job_table(
        "parallelism",
        {p: {"items": list(range(items)), "parallelism": p} for p in parallelisms},
    )
    out = [f"\n### The job in parallel: {items:,} items through the SDK's replay engine\n", *rows]
    low, high = min(parallelisms), max(parallelisms)
    ratio = per_item[high] / per_item[low]
    out.append(
        f"\nTarget: CPU per item at parallelism {high} at most half of parallelism {low}'s: "
        f"{ratio:.2f}x, {'met' if ratio <= 0.5 else '**not met**'}."
    )
    walls = []
    for parallelism in (low, high):
        began = time.perf_counter()
        run = drive(
            {"items": list(range(wall_items)), "parallelism": parallelism},
            activity_seconds=ACTIVITY_SECONDS,
        )
        assert run.output["processed"] == wall_items, run.output
        walls.append(f"{time.perf_counter() - began:.1f} s at parallelism {parallelism}")
    out.append(
        f"\nWall time of a pass of {wall_items} items whose activity takes "
        f"{ACTIVITY_SECONDS * 1000:g} ms (the replay driver runs an episode's activities at "
        f"once, in threads; the Durable double does not run orchestrations): "
        + ", ".join(walls)
        + "."
    )
    return "\n".join(out)


#: How long SingletonActivity takes per item in the wall-time figure.
ACTIVITY_SECONDS = 0.05


def job_large_parallel(items: int, parallelism: int) -> str:
    """One large pass at ``parallelism`` driven to its end: its longest execution history
    against the bound docs/jobs.md states (two events per item of an execution, four per
    episode, about ``WINDOWS_PER_EXECUTION + 2`` episodes)."""
    from durable_singleton.job._run import ITEMS_PER_EXECUTION, WINDOWS_PER_EXECUTION

    rows, _, histories = _job_table(
        "items", {items: {"items": list(range(items)), "parallelism": parallelism}}
    )
    chunk = max(ITEMS_PER_EXECUTION, WINDOWS_PER_EXECUTION * parallelism)
    bound = 2 * chunk + 4 * (WINDOWS_PER_EXECUTION + 2)
    longest = histories[items]
    return "\n".join(
        [
            f"\n### A large pass in parallel: {items:,} items at parallelism {parallelism}\n",
            *rows,
            f"\nLongest execution history {longest:,} events against the bound of "
            f"docs/jobs.md, 2 x {chunk} + 4 x {WINDOWS_PER_EXECUTION + 2} = {bound:,}: "
            f"{'within' if longest <= bound else '**over**'}.",
        ]
    )


async def profile_start(bench: Bench, count: int) -> str:
    """Where a fresh start's time goes, by module (pyinstrument, sampling the thread
    that runs the starter)."""
    import collections

    from pyinstrument import Profiler

    bench.durable.reset(latency=0.01, start_check_delay=0.01)
    requests = [bench.request(bench.fresh_id("profile")) for _ in range(count)]
    profiler = Profiler(interval=0.0002, async_mode="disabled")
    profiler.start()
    for request in requests:
        await bench.call(OURS.http_start, request)
    await settled(OURS)
    session = profiler.stop()
    totals: "collections.Counter[str]" = collections.Counter()
    root = session.root_frame()
    stack: List[Tuple[Any, Optional[str], str]] = [(root, None, "")] if root is not None else []
    while stack:
        frame, path, function = stack.pop()
        # "[self]" frames are their parent's own time; a built-in (C) function's time
        # is its caller's module's, except the event loop's wait for I/O.
        own = frame.file_path
        if not frame.is_synthetic and (
            (own and not own.startswith("<")) or frame.function in IDLE_FUNCTIONS
        ):
            path, function = own, frame.function
        children = list(frame.children)
        totals[_module_of(path, function)] += frame.time - sum(c.time for c in children)
        stack.extend((child, path, function) for child in children)
    idle = totals.pop(IDLE, 0.0)
    busy = sum(totals.values())
    out = [
        f"\n### Profile of {count} fresh starts (pyinstrument, Durable double at 10 ms)\n",
        f"Sampled time of the starter's thread: {(busy + idle) * 1000 / count:.1f} ms per "
        f"request, of which waiting for I/O {idle * 1000 / count:.1f} ms and running "
        f"{busy * 1000 / count:.2f} ms, by module:\n",
        "| module | ms per request | share of running |",
        "|---|---:|---:|",
    ]
    for module, seconds in sorted(totals.items(), key=lambda kv: -kv[1])[:14]:
        out.append(f"| {module} | {seconds * 1000 / count:.3f} | {seconds / busy:.0%} |")
    return "\n".join(out)


IDLE = "(waiting for I/O)"
IDLE_FUNCTIONS = ("poll", "select", "epoll.poll")


def _module_of(path: Optional[str], function: str) -> str:
    """The package a sampled frame belongs to, for the profile's summary."""
    if not path or path.startswith("<"):
        return IDLE if function in IDLE_FUNCTIONS else "(built-in)"
    path = path.replace("\\", "/")
    if "site-packages/" in path:
        parts = path.split("site-packages/", 1)[1].split("/")
        depth = 3 if parts[0] == "azure" and len(parts) > 3 else 1
        return ".".join(p.removesuffix(".py") for p in parts[:depth])
    if "/durable_singleton/" in path:
        return "durable_singleton"
    if "/tests/" in path or "/benchmarks/" in path:
        return "(benchmark harness, Durable double client side)"
    name = Path(path).parent.name if Path(path).name == "__init__.py" else Path(path).stem
    if Path(path).parent.name in ("asyncio", "json", "http", "email", "concurrent"):
        name = Path(path).parent.name
    return f"stdlib {name}"


async def next_run_bursts(
    durable: DurableDouble, azurite: Azurite, args: argparse.Namespace
) -> str:
    """The bursts of next runs for one id (benchmarks/burst.py) through ours, and what
    Azurite serves of the same storage calls alone."""
    storage = (azurite.connection_string, "singleton-locks")  # the app's default container
    table = await burst(
        durable,
        OURS.http_start,
        args.burst_pickups,
        args.burst_rates,
        args.burst_seconds,
        lambda: settled(OURS),
        storage,
    )
    return table + "\n" + await storage_ceiling(*storage, 16, args.burst_seconds)


async def bursts_apart(args: argparse.Namespace) -> str:
    """The bursts (:func:`next_run_bursts`) in a process of their own, on an Azurite of
    their own: after the phases above, this run's Azurite is still busy with their
    backlog for minutes (a start before the first burst got 503 storage-unavailable for
    over a minute), which would measure that backlog instead of the bursts."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "benchmarks.run", "--burst-only", "--out", out]
        process = await asyncio.create_subprocess_exec(
            *command, *(["--quick"] if args.quick else []), cwd=ROOT
        )
        if await asyncio.wait_for(process.wait(), BURSTS_TIMEOUT_SECONDS) != 0:
            raise RuntimeError("the bursts failed; see their output above")
        return (Path(out) / "burst.md").read_text()


async def limit_costs(durable: DurableDouble, counter: RequestCounter, requests: int) -> str:
    """What a start with a limit per key costs beside a singleton start, through ours
    (benchmarks/limited.py)."""
    return await limited_costs(
        durable,
        OURS.http_start,
        OURS.http_limited_start,
        lambda: settled(OURS),
        lambda: counter.requests,
        requests,
    )


async def main(args: argparse.Namespace) -> str:
    """Run the benchmark and return its report."""
    counter = COUNTER
    azurite = Azurite().start()
    durable = DurableDouble().start()
    os.environ["AzureWebJobsStorage"] = azurite.connection_string
    # The double plays the job's end (SingletonNextRun) on the app's lock container.
    durable.use_storage(azurite.connection_string, "singleton-locks")
    try:
        if args.limits_only:
            report = await limit_costs(durable, counter, args.requests)
            await OURS.close()
            await close_app_clients()
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "limits.md").write_text(report + "\n")
            return report
        if args.burst_only:
            report = await next_run_bursts(durable, azurite, args)
            await OURS.close()
            await close_app_clients()
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "burst.md").write_text(report)
            return report
        bench = Bench(durable, counter)
        repetitions = []
        for _ in range(args.repeat):
            runs = [
                await measure(bench, latency, args.requests, args.races)
                for latency in args.latency_ms
            ]
            repetitions.append((runs, await lock_protocol(azurite, max(args.races))))
        if args.http_only:
            profile = limits = bursts = ""
            memory = None
        else:
            profile = await profile_start(bench, args.requests)
            limits = await limit_costs(durable, counter, args.requests)
            # Last on this Azurite: the memory phase's thousands of requests leave it busy
            # for minutes (later phases on it got 503 storage-unavailable).
            memory = await bench.memory(args.memory_requests)
            bursts = "" if args.skip_burst else await bursts_apart(args)
        chart(repetitions[-1][0], args.out / "benchmark.png")
        await OURS.close()
        await close_app_clients()
    finally:
        durable.stop()
        azurite.stop()
    report = (
        f"Machine: {machine()}.\n{args.requests} sequential requests per path and "
        "starter. ours: HttpStartSingle; seed: the usual check-then-start starter, with no "
        "lock (`tests/support/seed_starter.py`).\n"
        + tables(repetitions, memory, args.target_latency)
        + "\n"
        + profile.rstrip("\n")
        + "\n\n"
        + limits
        + ("\n" + bursts if bursts else "")
    )
    if not (args.skip_jobs or args.http_only):
        report += (
            "\n"
            + job_cost(args.job_sizes)
            + "\n"
            + job_parallel(args.parallel_items, [1, 8, 32], args.wall_items)
            + "\n"
            + job_large_parallel(args.large_items, 32)
        )
    (args.out / "benchmark.md").write_text(report + "\n")
    return report


def arguments() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="a small run that checks the benchmark works (CI)"
    )
    parser.add_argument(
        "--skip-jobs",
        action="store_true",
        help="only the HTTP figures (for repeated runs that show their spread)",
    )
    parser.add_argument(
        "--skip-burst", action="store_true", help="leave out the bursts of next runs"
    )
    parser.add_argument(
        "--http-only",
        action="store_true",
        help="only the HTTP tables and their targets, without the profile, the limit's "
        "costs, the memory phase, the bursts and the jobs (a few minutes; give --out, or "
        "it replaces docs/benchmark.md)",
    )
    parser.add_argument(
        "--burst-only",
        action="store_true",
        help="only the bursts of next runs, into burst.md (benchmarks/out/ unless --out)",
    )
    parser.add_argument(
        "--limits-only",
        action="store_true",
        help="only what a start with a limit per key costs, into limits.md "
        "(benchmarks/out/ unless --out)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        nargs="+",
        default=[0.0, 10.0],
        help="Durable double latencies per call to measure at",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="how many times to measure the HTTP figures, for their spread (3; 1 with --quick)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where benchmark.md and benchmark.png go (docs/, or benchmarks/out/ with --quick)",
    )
    args = parser.parse_args()
    args.target_latency = 10.0 if 10.0 in args.latency_ms else args.latency_ms[-1]
    args.burst_pickups, args.burst_seconds = [0.2, 1.0, 30.0], 10.0
    args.burst_rates = [25.0, 50.0, 100.0, 200.0, 400.0, 800.0]
    if (args.burst_only or args.limits_only) and args.out is None:
        args.out = ROOT / "benchmarks" / "out"
    if args.quick:
        args.requests, args.races, args.memory_requests = 20, [10, 50], 1000
        args.job_sizes = [100, 1000]
        args.parallel_items, args.wall_items = 1000, 64
        args.large_items = 2000
        args.burst_pickups, args.burst_rates, args.burst_seconds = [0.2], [1.0, 2.0], 2.0
        args.out = args.out or ROOT / "benchmarks" / "out"
        args.repeat = args.repeat or 1
    else:
        args.requests, args.races, args.memory_requests = 200, [10, 50, 200], 10_000
        args.job_sizes = [1000, 10_000, 100_000]
        args.parallel_items, args.wall_items = 10_000, 200
        args.large_items = 100_000
        args.out = args.out or ROOT / "docs"
        args.repeat = args.repeat or 3
    return args


if __name__ == "__main__":
    print(asyncio.run(main(arguments())))
