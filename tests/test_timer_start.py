"""TimerStartSingle: a scheduled singleton with overlap policies, against the Durable
double and Azurite, its timer binding as the runtime passes it."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import time
from typing import Any, List

import pytest
from azure.functions.timer import TimerRequest  # the concrete class the runtime makes

import TimerStartSingle
from tests.support.app import change_setting
from tests.support.processes import AppProcesses
from tests.support.report import report

PREFIX = "SINGLETON_SCHEDULE"


@pytest.fixture
def schedule(app_env, durable, monkeypatch) -> Any:
    """The default schedule, enabled, starting SingletonOrchestrator as 'nightly' (whose
    runs the double ends through the test's next-run channels)."""
    durable.use_storage(os.environ["AzureWebJobsStorage"], app_env)
    settings = {
        f"{PREFIX}": "0 */15 * * * *",
        f"{PREFIX}_ENABLED": "true",
        f"{PREFIX}_ORCHESTRATOR": "SingletonOrchestrator",
        f"{PREFIX}_INSTANCE_ID": "nightly",
        f"{PREFIX}_INPUT": '{"items": ["a", "b"]}',
        f"{PREFIX}_OVERLAP": "skip",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


async def tick(durable: Any, past_due: bool = False) -> None:
    await TimerStartSingle.main(TimerRequest(past_due=past_due), durable.starter())


def tick_lines(caplog: Any) -> List[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith("TimerStartSingle ") and "trigger=timer" in r.getMessage()
    ]


async def test_the_first_tick_starts_with_the_configured_input(durable, schedule, caplog) -> None:
    caplog.set_level(logging.INFO)
    await tick(durable)
    assert durable.accepted_starts == [("SingletonOrchestrator", "nightly")]
    assert durable.instances["nightly"].input["items"] == ["a", "b"]
    [line] = tick_lines(caplog)
    assert "instance=nightly function=SingletonOrchestrator decision=started status=202" in line
    assert "past_due=false" in line


async def test_a_tick_while_running_skips(durable, schedule, caplog) -> None:
    caplog.set_level(logging.INFO)
    durable.put("nightly", "Running")
    await tick(durable)
    assert durable.accepted_starts == [] and durable.terminations == [] and durable.events == []
    [line] = tick_lines(caplog)
    assert "decision=skipped" in line


@pytest.mark.parametrize(
    "overlap,decision",
    [("cancelOther", "stopped-existing"), ("terminateOther", "replaced-existing")],
)
async def test_a_tick_while_running_replaces_per_policy(
    durable, schedule, caplog, overlap, decision
) -> None:
    caplog.set_level(logging.INFO)
    schedule.setenv(f"{PREFIX}_OVERLAP", overlap)
    durable.reset(stop_delay=0.1, terminate_delay=0.1)
    durable.put("nightly", "Running")
    await tick(durable)
    assert durable.accepted_starts == [("SingletonOrchestrator", "nightly")]
    assert durable.dropped_starts == []
    if overlap == "cancelOther":
        assert [(i, e) for i, e, _ in durable.events] == [("nightly", "Stop")]
        assert durable.terminations == []
    else:
        assert [i for i, _ in durable.terminations] == ["nightly"] and durable.events == []
    [line] = tick_lines(caplog)
    assert f"decision={decision}" in line


@pytest.mark.parametrize(
    "ends,decision", [(True, "replaced-existing"), (False, "termination-timeout")]
)
async def test_a_tick_that_replaces_a_run_logs_the_next_run_it_dropped(
    durable, schedule, caplog, start, ends, decision
) -> None:
    """No caller hears of a next run a tick's terminateOther drops, so the tick's line
    names it, whether the start then happened or timed out waiting for the old run's end."""
    caplog.set_level(logging.INFO)
    schedule.setenv(f"{PREFIX}_OVERLAP", "terminateOther")
    await change_setting(schedule, "SINGLETON_TERMINATE_TIMEOUT_SECONDS", "1")
    durable.reset(terminate_delay=0.05 if ends else None)
    await start("nightly", {"items": ["x"]})
    told = json.loads(
        (await start("nightly", {"items": ["y"]}, "onConflict=bufferOne")).get_body()
    )
    await tick(durable)
    [line] = tick_lines(caplog)
    assert f"decision={decision}" in line and f"dropped={told['requestId']}" in line


async def test_a_tick_during_a_run_buffers_one_more_run(durable, schedule, caplog) -> None:
    caplog.set_level(logging.INFO)
    schedule.setenv(f"{PREFIX}_OVERLAP", "bufferOne")
    durable.reset(complete_after=0.5)
    await tick(durable)
    await tick(durable)
    assert len(durable.created) == 1
    assert durable.events == []  # kept in the id's next-run channel, not sent
    assert "decision=buffered status=202" in tick_lines(caplog)[-1]
    await asyncio.sleep(0.8)
    assert [input_ for _, _, input_, _ in durable.runs][1] == {"items": ["a", "b"]}


async def test_three_ticks_during_one_run_buffer_one_run(durable, schedule) -> None:
    schedule.setenv(f"{PREFIX}_OVERLAP", "bufferOne")
    durable.reset(complete_after=0.6)
    for _ in range(4):  # the first starts; three arrive during its run
        await tick(durable)
    await asyncio.sleep(1.5)
    assert len(durable.runs) == 2  # the run, and one more
    assert len(durable.created) == 1
    assert durable.instances["nightly"].status == "Completed"


async def test_buffer_one_for_an_orchestrator_without_next_runs_is_misconfigured(
    durable, schedule, caplog, monkeypatch
) -> None:
    from durable_singleton._catalog import Catalog

    schedule.setenv(f"{PREFIX}_OVERLAP", "bufferOne")
    monkeypatch.setattr(Catalog, "accepts_next_run", lambda self, name: False)
    await tick(durable)
    assert sum(durable.calls.values()) == 0
    assert any(
        "SINGLETON_SCHEDULE_OVERLAP" in r.getMessage()
        for r in caplog.records
        if r.levelname == "ERROR"
    )


async def test_a_tick_after_completion_starts_again(durable, schedule) -> None:
    await tick(durable)
    durable.set_status("nightly", "Completed")
    await tick(durable)
    assert len(durable.accepted_starts) == 2
    assert durable.instances["nightly"].status == "Running"


async def test_reuse_applies_to_a_finished_run(durable, schedule, caplog) -> None:
    caplog.set_level(logging.INFO)
    schedule.setenv(f"{PREFIX}_REUSE", "allowDuplicateFailedOnly")
    durable.put("nightly", "Completed")
    await tick(durable)
    assert durable.accepted_starts == []
    assert "decision=rejected-finished" in tick_lines(caplog)[0]


async def test_a_past_due_tick_starts_at_most_one_run(durable, schedule, caplog) -> None:
    caplog.set_level(logging.INFO)
    await asyncio.gather(*[tick(durable, past_due=True) for _ in range(3)])
    assert durable.accepted_starts == [("SingletonOrchestrator", "nightly")]
    assert all("past_due=true" in line for line in tick_lines(caplog))


async def test_a_disabled_schedule_starts_nothing(durable, schedule, caplog) -> None:
    caplog.set_level(logging.INFO)
    schedule.setenv(f"{PREFIX}_ENABLED", "false")
    await tick(durable)
    assert sum(durable.calls.values()) == 0
    assert "decision=schedule-disabled" in tick_lines(caplog)[0]


@pytest.mark.parametrize(
    "setting,value",
    [
        ("_ORCHESTRATOR", "NoSuchOrchestrator"),
        ("_INSTANCE_ID", "bad id/x"),
        ("_INPUT", "{not json"),
        ("_INPUT", '{"items": "abc"}'),
        ("_INPUT", '{"items": [1e400]}'),
        ("_OVERLAP", "bufferAll"),
        ("_REUSE", "sometimes"),
        ("_ENABLED", "yes"),
    ],
)
async def test_an_invalid_setting_starts_nothing_and_says_which(
    durable, schedule, caplog, setting, value
) -> None:
    caplog.set_level(logging.INFO)
    schedule.setenv(f"{PREFIX}{setting}", value)
    for _ in range(2):  # on every tick
        await tick(durable)
    assert sum(durable.calls.values()) == 0
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2 and all(f"{PREFIX}{setting}" in e for e in errors)
    assert all(value not in e for e in errors)
    assert all("decision=misconfigured" in line for line in tick_lines(caplog))


async def test_a_missing_instance_id_is_named(durable, schedule, caplog) -> None:
    caplog.set_level(logging.INFO)
    schedule.delenv(f"{PREFIX}_INSTANCE_ID")
    await tick(durable)
    assert durable.accepted_starts == []
    assert any(f"{PREFIX}_INSTANCE_ID" in r.getMessage() for r in caplog.records)


async def test_a_storage_outage_is_logged_and_starts_nothing(durable, schedule, caplog) -> None:
    from tests.support.azurite import connection_string, free_port

    caplog.set_level(logging.INFO)
    schedule.setenv("AzureWebJobsStorage", connection_string(free_port()))
    await tick(durable)
    assert durable.accepted_starts == []
    assert "decision=storage-unavailable status=503" in tick_lines(caplog)[0]


async def test_a_second_schedule_has_its_own_prefix(durable, schedule, monkeypatch) -> None:
    from tests.support.app import app

    monkeypatch.setenv("SINGLETON_SCHEDULE_REPORTS_ENABLED", "true")
    monkeypatch.setenv("SINGLETON_SCHEDULE_REPORTS_INSTANCE_ID", "reports")
    await app.timer_tick(TimerRequest(), durable.starter(), "SINGLETON_SCHEDULE_REPORTS")
    await tick(durable)
    assert sorted(i for _, i in durable.accepted_starts) == ["nightly", "reports"]


@pytest.mark.processes
async def test_concurrent_ticks_on_several_app_instances_start_exactly_one_run(
    durable, schedule, app_env
) -> None:
    """Every app instance's timer fires (no host-level singleton lock, as when the
    schedule monitor is off or storage blips): one run starts."""
    durable.reset(start_check_delay=0.2)
    start_at = time.time() + 5  # after every process has imported the app
    workers = AppProcesses()
    for _ in range(3):
        await workers.start("-c", _TICKS, durable.rpc_base_url, str(start_at))
    await workers.outputs(90)
    codes = collections.Counter(durable.accepted_starts)
    report(
        f"TimerStartSingle, 3 processes x 3 concurrent ticks: runs started "
        f"{len(durable.accepted_starts)}, dropped {len(durable.dropped_starts)}"
    )
    assert codes == {("SingletonOrchestrator", "nightly"): 1}
    assert durable.dropped_starts == []


#: One app instance's burst of ticks at a set moment (argv: rpc base URL, start time).
_TICKS = """
import asyncio, sys, time
from azure.functions.timer import TimerRequest  # the concrete class the runtime makes
import TimerStartSingle
from tests.support.durable_double import starter_binding

async def ticks():
    starter = starter_binding(sys.argv[1])
    await asyncio.sleep(max(0.0, float(sys.argv[2]) - time.time()))
    await asyncio.gather(*[TimerStartSingle.main(TimerRequest(), starter) for _ in range(3)])

asyncio.run(ticks())
"""


async def test_a_replace_that_times_out_is_logged_not_raised(
    durable, schedule, caplog, monkeypatch
) -> None:
    """A tick has no request to build URLs from; its failures about an instance are still
    logged with their kind."""
    caplog.set_level(logging.INFO)
    schedule.setenv(f"{PREFIX}_OVERLAP", "cancelOther")
    await change_setting(monkeypatch, "SINGLETON_TERMINATE_TIMEOUT_SECONDS", "1")
    durable.reset(stop_delay=None)
    durable.put("nightly", "Running")
    await tick(durable)
    assert durable.accepted_starts == []
    [line] = tick_lines(caplog)
    assert "decision=stop-timeout status=409" in line


@pytest.mark.parametrize("setting", ["_INSTANCE_ID", "_ORCHESTRATOR"])
async def test_an_invalid_settings_value_reaches_no_log_line(
    durable, schedule, caplog, setting
) -> None:
    """A connection string pasted into the wrong setting stays out of every log line."""
    caplog.set_level(logging.DEBUG)
    secret = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0LWtleQ=="
    schedule.setenv(f"{PREFIX}{setting}", secret)
    await tick(durable)
    assert sum(durable.calls.values()) == 0
    assert not [r for r in caplog.records if "c2VjcmV0" in r.getMessage()]
    [line] = tick_lines(caplog)
    assert "instance=- function=-" in line and "decision=misconfigured" in line
