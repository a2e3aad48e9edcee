"""Racing callers: exactly one wins, in one process and across several.

The double's duplicate check is non-atomic and widened by a delay, as the Azure
Storage provider's is: without the lock every racing caller is told "started".
"""

from __future__ import annotations

import asyncio
import collections
import json
import time

import pytest

from tests.support import seed_starter
from tests.support.answers import body
from tests.support.processes import AppProcesses
from tests.support.report import report
from tests.support.requests import start_request

CALLERS = 30
WIDENED = 0.2  # seconds between the double's duplicate check and its write


async def test_exactly_one_of_many_concurrent_callers_wins(start, durable) -> None:
    durable.reset(start_check_delay=WIDENED)
    responses = await asyncio.gather(*[start("race", {"items": [i]}) for i in range(CALLERS)])
    codes = collections.Counter(r.status_code for r in responses)
    report(
        f"HttpStartSingle, {CALLERS} concurrent callers, one process: told started "
        f"{codes[202]}, refused {codes[409]}; starts accepted by the Durable API "
        f"{len(durable.accepted_starts)}, refused as duplicates {len(durable.refused_starts)}"
    )
    assert codes == {202: 1, 409: CALLERS - 1}
    assert len(durable.accepted_starts) == 1 and durable.dropped_starts == []
    for response in responses:
        if response.status_code == 409:
            conflict = body(response)
            assert conflict["instanceId"] == "race"
            assert conflict["runtimeStatus"] == "Running"
            assert conflict["statusQueryGetUri"] == response.headers["Location"]


async def test_the_seeds_check_then_start_tells_many_callers_started(durable) -> None:
    """The baseline, through the same race: it has no lock."""
    durable.reset(start_check_delay=WIDENED)
    starter = durable.starter()
    responses = await asyncio.gather(
        *[
            seed_starter.main(
                start_request("SingletonOrchestrator", "race", {"items": []}), starter
            )
            for _ in range(CALLERS)
        ]
    )
    started = sum(r.status_code == 202 for r in responses)
    report(
        f"seed check-then-start, {CALLERS} concurrent callers, one process: told started "
        f"{started}; starts accepted by the Durable API {len(durable.accepted_starts)}, of "
        f"which dropped by the runtime {len(durable.dropped_starts)} (one instance runs)"
    )
    assert started > 1  # the race the lock closes is real in the double
    assert len(durable.accepted_starts) - len(durable.dropped_starts) == 1


async def test_distinct_ids_in_parallel_all_start(start, durable) -> None:
    durable.reset(start_check_delay=WIDENED)
    began = time.monotonic()
    responses = await asyncio.gather(*[start(f"job-{i}") for i in range(20)])
    assert [r.status_code for r in responses] == [202] * 20
    assert len(durable.accepted_starts) == 20
    # Twenty independent locks: about one start's time, not twenty in a queue.
    assert time.monotonic() - began < 20 * WIDENED


async def test_use_existing_race_every_caller_names_the_one_instance(start, durable) -> None:
    durable.reset(start_check_delay=WIDENED)
    responses = await asyncio.gather(
        *[start("shared", query="onConflict=useExisting") for _ in range(CALLERS)]
    )
    codes = collections.Counter(r.status_code for r in responses)
    assert codes == {202: 1, 200: CALLERS - 1}
    assert {body(r)["id"] for r in responses} == {"shared"}
    assert len(durable.accepted_starts) == 1


async def test_terminate_existing_race_leaves_exactly_one_active_instance(start, durable) -> None:
    durable.reset(start_check_delay=0.05, terminate_delay=0.05)
    durable.put("replace-me", "Running")
    callers = 6
    responses = await asyncio.gather(
        *[start("replace-me", query="onConflict=terminateExisting") for _ in range(callers)]
    )
    assert [r.status_code for r in responses] == [202] * callers
    # Each start came after the previous execution had ended: none was dropped for
    # overlapping an active one, and exactly one is active at the end.
    assert len(durable.accepted_starts) == callers
    assert len(durable.terminations) == callers
    assert durable.dropped_starts == []
    assert durable.active_instances() == ["replace-me"]


@pytest.mark.processes
async def test_exactly_one_winner_across_processes(durable, app_env) -> None:
    """Separate Python processes are separate app instances sharing one storage account."""
    durable.reset(start_check_delay=WIDENED)
    processes, each = 4, 8
    start_at = time.time() + 6  # after every process has imported the app
    workers = AppProcesses()
    for _ in range(processes):
        await workers.start(
            "-m",
            "tests.support.race_worker",
            durable.rpc_base_url,
            "multi",
            str(each),
            str(start_at),
        )
    codes: collections.Counter = collections.Counter()
    for out in await workers.outputs(120):
        codes.update(json.loads(out))
    report(
        f"HttpStartSingle, {processes} processes x {each} concurrent callers: told started "
        f"{codes[202]}, refused {codes[409]}; starts accepted by the Durable API "
        f"{len(durable.accepted_starts)}"
    )
    assert codes == {202: 1, 409: processes * each - 1}
    assert len(durable.accepted_starts) == 1 and durable.dropped_starts == []
