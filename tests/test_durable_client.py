"""The app-owned Durable API client: every answer mapped by its status code, and the
functions' answers where the Durable API answers a status read with a 500."""

from __future__ import annotations

import datetime
import json
import logging
import re
from pathlib import Path

import pytest
from azure.functions.timer import TimerRequest

import TimerStartSingle
from durable_singleton._durable import Binding, InstanceStatus
from tests.support.answers import kind
from tests.support.app import APP_ROOT

FAILED = {
    "name": "SingletonOrchestrator",
    "instanceId": "job",
    "runtimeStatus": "Failed",
    "output": "boom",
    "createdTime": "2026-01-05T03:00:00Z",
    "lastUpdatedTime": "2026-01-05T03:01:00Z",
}


@pytest.mark.parametrize("code", [400, 500])
async def test_a_failed_instance_answered_with_its_status_reads_as_failed(
    start, instance, durable, code
) -> None:
    """Some builds answer a Failed instance's status with 400 or 500 and the status."""
    durable.fail_next("status", code, FAILED)
    response = await instance("GET", "job")
    assert response.status_code == 200
    assert json.loads(response.get_body())["runtimeStatus"] == "Failed"
    durable.fail_next("status", code, FAILED)
    assert (await start("job")).status_code == 202  # Failed is finished: start again
    assert durable.accepted_starts == [("SingletonOrchestrator", "job")]


@pytest.mark.parametrize("code", [400, 500])
@pytest.mark.parametrize("body", [None, {"Message": "An error has occurred."}])
async def test_a_status_error_without_a_status_is_502_everywhere(
    start, instance, durable, code, body
) -> None:
    durable.put("job", "Running")
    for call in (lambda: instance("GET", "job"), lambda: instance("DELETE", "job")):
        durable.fail_next("status", code, body)
        response = await call()
        assert (response.status_code, kind(response)) == (502, "durable-error")
    durable.fail_next("status", code, body)
    response = await start("job")
    assert (response.status_code, kind(response)) == (502, "durable-error")
    assert durable.accepted_starts == [] and durable.events == []


async def test_a_tick_does_not_start_over_a_status_it_could_not_read(
    durable, app_env, monkeypatch, caplog
) -> None:
    for name, value in {"ENABLED": "true", "INSTANCE_ID": "nightly"}.items():
        monkeypatch.setenv(f"SINGLETON_SCHEDULE_{name}", value)
    durable.put("nightly", "Running")
    durable.fail_next("status", 500)
    caplog.set_level(logging.INFO)
    await TimerStartSingle.main(TimerRequest(), durable.starter())
    assert durable.accepted_starts == []
    assert any("decision=durable-error" in r.getMessage() for r in caplog.records)


async def test_a_500_to_a_start_with_nothing_active_is_502_not_409(start, durable) -> None:
    durable.fail_next("start", 500, {"Message": "An error has occurred."})
    response = await start("job")
    assert (response.status_code, kind(response)) == (502, "durable-error")


@pytest.mark.parametrize("code", [200, 201, 204, 302])
async def test_a_start_answered_with_anything_but_202_409_500_is_502(start, durable, code) -> None:
    durable.fail_next("start", code, {"id": "job"})
    response = await start("job")
    assert (response.status_code, kind(response)) == (502, "durable-error")


async def test_a_stop_answered_404_or_410_means_the_instance_ended(instance, durable) -> None:
    durable.put("job", "Running")
    durable.fail_next("raiseEvent", 404)
    response = await instance("DELETE", "job")
    assert (response.status_code, kind(response)) == (502, "durable-error")  # purged
    durable.fail_next("raiseEvent", 500)
    response = await instance("DELETE", "job")
    assert (response.status_code, kind(response)) == (502, "durable-error")


async def test_a_bad_stop_mode_is_answered_before_any_call(instance, durable) -> None:
    durable.put("job", "Running")
    response = await instance("DELETE", "job", query="mode=kill")
    assert (response.status_code, kind(response)) == (400, "invalid-query-parameter")
    assert sum(durable.calls.values()) == 0


def test_the_binding_links_keep_the_id_and_move_urls_to_the_callers_origin(durable) -> None:
    binding = Binding.parse(durable.starter(origin="http://host:7071"))
    links = binding.links("a:b", "https://public.example/api/orchestrators/F/a:b")
    assert links["id"] == "a:b"
    assert links["statusQueryGetUri"].startswith(
        "https://public.example/runtime/webhooks/durabletask/instances/a:b?"
    )
    assert binding.links("x")["statusQueryGetUri"].startswith("http://host:7071/runtime/")


@pytest.mark.parametrize("document", ["{}", "[]", '{"taskHubName": 1}', "not json"])
def test_a_document_that_is_not_a_binding_is_refused(document) -> None:
    with pytest.raises(ValueError):
        Binding.parse(document)


def test_no_source_touches_the_sdks_private_transport_or_reads_error_text() -> None:
    sources = [
        p
        for p in APP_ROOT.rglob("*.py")
        if not {".venv", "node_modules", "tests"} & set(p.relative_to(APP_ROOT).parts)
        and not p.relative_to(APP_ROOT).parts[0].startswith(".venv")
    ]
    forbidden = re.compile(
        r"_post_async_request|_get_async_request|_delete_async_request|http_utils|already exists"
    )
    offenders = [str(p) for p in sources if forbidden.search(Path(p).read_text())]
    assert sources and not offenders


def test_a_status_in_the_extensions_form_reads_to_the_second() -> None:
    """HttpApiHandler.ConvertFrom writes ``CreatedTime.ToString("s") + "Z"``: the
    instance's age (pendingSeconds, stuck) is read from that form."""
    read_at = datetime.datetime(2026, 12, 3, 10, 0, 30, 500000, tzinfo=datetime.timezone.utc)
    status = InstanceStatus.from_json(
        {"runtimeStatus": "Pending", "createdTime": "2026-12-03T10:00:00Z"}, read_at, 20.0
    )
    assert status.created_time == read_at.replace(second=0, microsecond=0)
    assert status.pending_seconds == 30.5 and status.stuck
