"""HttpStartSingle.main as the host calls it, against the loopback Durable double.

The real SDK client does the HTTP; the lock runs on the test's Azurite.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from tests.support.answers import MANAGEMENT_KEYS, problem
from tests.support.app import change_setting
from tests.support.azurite import free_port
from tests.support.durable_double import ACTIVE, FINISHED, SYSTEM_KEY, starter_binding

ORIGIN_STATUS_URL = (
    "http://localhost:7071/runtime/webhooks/durabletask/instances/{id}"
    f"?taskHub=TestHubName&connection=Storage&code={SYSTEM_KEY}"
)


# -- default policy: the decision table end to end -----------------------------------


async def test_no_instance_starts_it_with_the_sdks_check_status_response(start, durable) -> None:
    response = await start("nightly-import", {"items": [1, "two"]})
    assert response.status_code == 202
    body = json.loads(response.get_body())
    assert set(body) == MANAGEMENT_KEYS | {"outcome"}
    assert body["outcome"] == "started"
    assert body["id"] == "nightly-import"
    assert response.headers["Location"] == ORIGIN_STATUS_URL.format(id="nightly-import")
    assert response.headers["Retry-After"] == "10"
    assert durable.accepted_starts == [("SingletonOrchestrator", "nightly-import")]
    # The caller's input, and the run the app names for SingletonOrchestrator, which takes
    # next runs (the task hub is its channel's: docs/jobs.md).
    sent = durable.instances["nightly-import"].input
    assert sent == {"items": [1, "two"], "run": {"id": sent["run"]["id"], "hub": "TestHubName"}}


async def test_empty_body_starts_with_no_input(start, durable) -> None:
    assert (await start("no-input")).status_code == 202
    assert set(durable.instances["no-input"].input) == {"run"}  # nothing but the run's name


@pytest.mark.parametrize("status", sorted(ACTIVE))
async def test_active_instance_is_409_pointing_at_it(start, durable, status: str) -> None:
    durable.put("nightly-import", status)
    response = await start("nightly-import", {"items": []})
    body = problem(response, 409, "instance-active")
    assert body["instanceId"] == "nightly-import"
    assert body["runtimeStatus"] == status
    assert body["name"] == "SingletonOrchestrator"
    assert body["createdTime"] and body["lastUpdatedTime"]
    assert MANAGEMENT_KEYS <= set(body)
    assert body["statusQueryGetUri"] == ORIGIN_STATUS_URL.format(id="nightly-import")
    assert "/instances/nightly-import/terminate?" in body["terminatePostUri"]
    assert response.headers["Location"] == body["statusQueryGetUri"]
    assert durable.accepted_starts == []
    assert durable.calls == {"status": 1}  # the fast path: one read, no start


@pytest.mark.parametrize("status", sorted(FINISHED))
async def test_finished_instance_starts_a_new_execution(start, durable, status: str) -> None:
    durable.put("nightly-import", status)
    response = await start("nightly-import", {"items": ["x"]})
    assert response.status_code == 202
    assert durable.accepted_starts == [("SingletonOrchestrator", "nightly-import")]
    assert durable.instances["nightly-import"].status == "Running"


@pytest.mark.parametrize("answer", ["legacy", "modern"])
async def test_extension_duplicate_refusal_is_409(start, durable, answer: str) -> None:
    """The id became active between the status read and the start: the extension
    refuses (500 in older builds, 409 in newer) and the caller gets our 409."""
    durable.reset(duplicate_answer=answer)
    durable.put("nightly-import", "Running")
    # The read before the lock misses the running instance (started outside the app: it
    # opened no next-run channel, so the start does not read the status again).
    durable.fail_next("status", 404)
    response = await start("nightly-import")
    body = problem(response, 409, "instance-active")
    assert body["runtimeStatus"] == "Running"
    assert durable.refused_starts == [("SingletonOrchestrator", "nightly-import")]
    assert durable.accepted_starts == []


async def test_fresh_start_makes_one_status_read_and_one_start(start, durable) -> None:
    """SingletonOrchestrator takes next runs: its start opens the id's next-run channel,
    which tells whether another caller started the id since the status was read, so the
    status is not read again under the lock (docs/design.md, cost per request)."""
    assert (await start("calls")).status_code == 202
    assert durable.calls == {"status": 1, "start": 1}


# -- bad input: a clear error, nothing reaches the Durable runtime -------------------

BAD_IDS = [
    "@entity",
    "a/b",
    "a\\b",
    "a#b",
    "a?b",
    "a%20b",
    "a&b",
    "a+b",
    "a b",
    "ctl\x07",
    "x" * 101,
    "..",
]


@pytest.mark.parametrize("instance_id", BAD_IDS)
async def test_bad_instance_id_is_400(start, durable, instance_id: str) -> None:
    body = problem(await start(instance_id), 400, "invalid-instance-id")
    assert "ASCII letters" in body["detail"]
    assert sum(durable.calls.values()) == 0


@pytest.mark.parametrize("name", ["SingletonActivity", "HttpStartSingle", "Unknown"])
async def test_non_orchestrator_function_is_404(start, durable, name: str) -> None:
    body = problem(await start("job", function_name=name), 404, "unknown-orchestrator")
    assert body["orchestrators"] == ["SingletonOrchestrator"]
    assert sum(durable.calls.values()) == 0


@pytest.mark.parametrize("raw", [b"{not json", b"\xc3\x28", b"[1, NaN]"])
async def test_body_that_is_not_utf8_json_is_400(start, durable, raw: bytes) -> None:
    problem(await start("job", raw_body=raw), 400, "invalid-body")
    assert sum(durable.calls.values()) == 0


async def test_body_over_the_default_limit_is_413(start, durable) -> None:
    raw = json.dumps({"items": ["x" * (1024 * 1024)]}).encode()
    body = problem(await start("job", raw_body=raw), 413, "body-too-large")
    assert body["limitBytes"] == 1024 * 1024
    assert sum(durable.calls.values()) == 0


async def test_body_limit_follows_the_app_setting(start, durable, monkeypatch) -> None:
    await change_setting(monkeypatch, "SINGLETON_MAX_BODY_BYTES", "20")
    problem(await start("job", {"items": ["abcdefghijkl"]}), 413, "body-too-large")
    assert (await start("job", {"items": []})).status_code == 202


async def test_invalid_orchestrator_input_is_400(start, durable) -> None:
    body = problem(await start("job", {"items": "not-a-list"}), 400, "invalid-input")
    assert "items must be a JSON array" in body["detail"]
    assert sum(durable.calls.values()) == 0


async def test_bad_query_parameter_is_400(start, durable) -> None:
    body = problem(await start("job", query="onConflict=ignore"), 400, "invalid-query-parameter")
    assert body["parameter"] == "onConflict"
    assert sum(durable.calls.values()) == 0


async def test_bad_app_setting_is_500_naming_the_setting(start, durable, monkeypatch) -> None:
    await change_setting(monkeypatch, "SINGLETON_DEFAULT_REUSE", "sometimes")
    body = problem(await start("job"), 500, "misconfigured")
    assert "SINGLETON_DEFAULT_REUSE" in body["detail"] and "sometimes" not in body["detail"]
    assert sum(durable.calls.values()) == 0


@pytest.mark.parametrize(
    "name,value",
    [
        ("SINGLETON_MAX_BODY_BYTES", "\u00b2"),
        ("AzureWebJobsStorage", "DefaultEndpointsProtocol=http;AccountName"),
    ],
)
async def test_every_bad_setting_is_misconfigured_never_internal_error(
    start, durable, monkeypatch, name: str, value: str
) -> None:
    await change_setting(monkeypatch, name, value)
    body = problem(await start("job"), 500, "misconfigured")
    assert name in body["detail"] and value not in body["detail"]
    assert durable.accepted_starts == []


# -- a failing dependency: a clear 5xx -----------------------------------------------


async def test_unreachable_durable_api_is_503_with_retry_after(start, durable) -> None:
    unreachable = starter_binding(f"http://127.0.0.1:{free_port()}/durabletask/")
    response = await start("job", starter=unreachable)
    problem(response, 503, "durable-unavailable")
    assert int(response.headers["Retry-After"]) > 0


@pytest.mark.parametrize("code", [401, 418, 503])
async def test_unexpected_status_answer_is_502(start, durable, code: int) -> None:
    durable.fail_next("status", code, {"Message": "internal detail that must not leak"})
    response = await start("job")
    body = problem(response, 502, "durable-error")
    assert "internal detail" not in response.get_body().decode()
    assert "reading the instance status" in body["detail"]
    assert durable.accepted_starts == []


async def test_start_failure_is_502_and_a_retry_succeeds(start, durable) -> None:
    durable.fail_next(
        "start", 500, {"Message": "An error has occurred.", "ExceptionMessage": "Storage timeout"}
    )
    body = problem(await start("job"), 502, "durable-error")
    assert "starting the instance" in body["detail"]
    # The lock was released on the error path: an immediate retry goes through.
    assert (await start("job")).status_code == 202


async def test_an_orchestrator_the_host_does_not_run_is_502_and_starts_nothing(
    start, durable
) -> None:
    """The app's folder has the orchestrator, but the host does not run it (disabled
    with AzureWebJobs.<name>.Disabled): the extension answers 400, which the SDK
    reports with the extension's message."""
    durable.reset(orchestrators=set())
    response = await start("job")
    body = problem(response, 502, "durable-error")
    assert "starting the instance" in body["detail"]
    assert "disabled" not in response.get_body().decode()  # the extension's words stay out
    assert durable.accepted_starts == [] and durable.instances == {}
    durable.orchestrators = {"SingletonOrchestrator"}  # enabled again
    assert (await start("job")).status_code == 202  # the lock was released, not kept


async def test_unexpected_fault_is_500_without_a_traceback(start, durable, monkeypatch) -> None:
    import durable_singleton._http_start

    def broken(*args: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(durable_singleton._http_start, "parse_start_request", broken)
    response = await start("job")
    problem(response, 500, "internal-error")
    assert "secret internals" not in response.get_body().decode()


# -- logging -------------------------------------------------------------------------


async def test_one_log_line_per_request_without_keys(start, durable, caplog) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, the SDKs' included
    await start("logged", {"items": [1]})  # started
    await start("logged")  # conflict
    await start("bad id")  # invalid
    lines = [r.getMessage() for r in caplog.records if r.name == "durable_singleton._starter"]
    assert len(lines) == 3
    assert lines[0].startswith(
        "HttpStartSingle instance=logged function=SingletonOrchestrator "
        "decision=started status=202 duration_ms="
    )
    assert "decision=rejected-active status=409" in lines[1]
    assert "instance=bad id" in lines[2] and "decision=invalid-instance-id status=400" in lines[2]
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert SYSTEM_KEY not in everything and "code=" not in everything
    assert "AccountKey" not in everything


async def test_log_line_escapes_control_characters(start, durable, caplog) -> None:
    caplog.set_level(logging.INFO, logger="durable_singleton._starter")
    await start("forged\nHttpStartSingle instance=x decision=started")
    [line] = [r.getMessage() for r in caplog.records if r.name == "durable_singleton._starter"]
    assert "\n" not in line and "\\n" in line


@pytest.mark.parametrize(
    "name,value",
    [
        ("AzureWebJobsStorage", "DefaultEndpointsProtocol=https;AccountName="),
        ("AzureWebJobsStorage", "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey="),
        ("AzureWebJobsStorage", "AccountName=acct;AccountKey=%%%secret%%%"),
        ("AzureWebJobsStorage", "AccountName=acct;AccountKey=a2V5;BlobEndpoint=notaurl"),
        ("AzureWebJobsStorage__blobServiceUri", "https://"),
        ("AzureWebJobsStorage__accountName", "Not An Account!"),
    ],
)
async def test_a_storage_connection_the_sdk_cannot_use_is_misconfigured_before_any_call(
    start, durable, monkeypatch, name: str, value: str
) -> None:
    if name != "AzureWebJobsStorage":
        monkeypatch.delenv("AzureWebJobsStorage")
    await change_setting(monkeypatch, name, value)
    body = problem(await start("job"), 500, "misconfigured")
    assert name in body["detail"] and value not in body["detail"]
    assert sum(durable.calls.values()) == 0


async def test_the_storage_client_follows_a_proxy_set_in_the_environment(
    start, durable, monkeypatch
) -> None:
    """Only with a proxy variable set does the storage client read its environment (it
    costs CPU on every request); then it does go through that proxy."""
    assert (await start("no-proxy")).status_code == 202
    await change_setting(monkeypatch, "HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("SINGLETON_STORAGE_TIMEOUT_SECONDS", "1")
    problem(await start("through-a-dead-proxy"), 503, "storage-unavailable")
    assert "through-a-dead-proxy" not in durable.instances
