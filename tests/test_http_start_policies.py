"""onConflict and reuse, each end to end through HttpStartSingle.main."""

from __future__ import annotations

import json
import time

import pytest

from tests.support.answers import MANAGEMENT_KEYS, problem
from tests.support.app import change_setting

# -- onConflict ----------------------------------------------------------------------


async def test_use_existing_answers_200_with_the_running_instance(start, durable) -> None:
    durable.put("report", "Running")
    response = await start("report", query="onConflict=useExisting")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = json.loads(response.get_body())
    assert MANAGEMENT_KEYS <= set(body)
    assert (body["id"], body["runtimeStatus"]) == ("report", "Running")
    assert response.headers["Location"] == body["statusQueryGetUri"]
    assert durable.accepted_starts == [] and durable.calls == {"status": 1}


async def test_use_existing_starts_when_nothing_runs(start, durable) -> None:
    assert (await start("report", query="onConflict=useExisting")).status_code == 202


async def test_terminate_existing_replaces_the_running_instance(start, durable) -> None:
    durable.reset(terminate_delay=0.3)  # termination finishes asynchronously
    durable.put("report", "Running")
    response = await start("report", {"items": ["new"]}, query="onConflict=terminateExisting")
    assert response.status_code == 202
    [(terminated, reason)] = durable.terminations
    assert terminated == "report" and "terminateExisting" in reason
    assert durable.accepted_starts == [("SingletonOrchestrator", "report")]
    assert durable.dropped_starts == []  # the start came after the old one ended
    assert durable.instances["report"].input["items"] == ["new"]


async def give_up_on(start, durable, instance_id: str, policy: str, problem_type: str):
    """Ask ``policy`` to replace a running ``instance_id`` that never ends (with the
    timeout set to 1 s); check the 409 ``problem_type`` common to both replace policies
    and return the response and its body."""
    durable.put(instance_id, "Running")
    began = time.monotonic()
    response = await start(instance_id, query=f"onConflict={policy}")
    body = problem(response, 409, problem_type)
    assert 1 <= time.monotonic() - began < 4
    assert (body["instanceId"], body["runtimeStatus"]) == (instance_id, "Running")
    assert durable.accepted_starts == []
    return response, body


async def test_terminate_existing_gives_up_when_the_instance_never_stops(
    start, durable, monkeypatch
) -> None:
    await change_setting(monkeypatch, "SINGLETON_TERMINATE_TIMEOUT_SECONDS", "1")
    durable.reset(terminate_delay=None)
    response, body = await give_up_on(
        start, durable, "stuck", "terminateExisting", "termination-timeout"
    )
    assert response.headers["Location"] == body["statusQueryGetUri"]
    # The lock was released: a later request is not blocked by it.
    durable.set_status("stuck", "Terminated")
    assert (await start("stuck")).status_code == 202


async def test_stop_existing_starts_only_after_the_old_instance_completed(start, durable) -> None:
    durable.reset(stop_delay=0.4)  # the job finishes its item in flight, then completes
    old = durable.put("report", "Running") or durable.instances["report"]
    response = await start("report", {"items": ["new"]}, query="onConflict=stopExisting")
    assert response.status_code == 202
    assert [(i, e) for i, e, _ in durable.events] == [("report", "Stop")]
    assert durable.terminations == []  # no activity is cut off mid-item
    assert old.status == "Completed"  # the old execution ended before the new one began
    assert durable.accepted_starts == [("SingletonOrchestrator", "report")]
    assert durable.refused_starts == [] and durable.dropped_starts == []
    assert durable.instances["report"].input["items"] == ["new"]


async def test_stop_existing_gives_up_with_its_own_problem_when_stop_is_ignored(
    start, durable, monkeypatch
) -> None:
    """An orchestrator that does not handle Stop never ends: 409, nothing started, the
    Stop still requested."""
    await change_setting(monkeypatch, "SINGLETON_TERMINATE_TIMEOUT_SECONDS", "1")
    durable.reset(stop_delay=None)
    _, body = await give_up_on(start, durable, "ignores", "stopExisting", "stop-timeout")
    assert "Stop stays requested" in body["detail"]
    assert durable.terminations == []
    assert [(i, e) for i, e, _ in durable.events] == [("ignores", "Stop")]


@pytest.mark.parametrize(
    ("policy", "call"), [("stopExisting", "raiseEvent"), ("terminateExisting", "terminate")]
)
@pytest.mark.parametrize("meanwhile", ["Completed", "purged"])
async def test_a_replace_when_the_instance_ended_meanwhile_just_starts(
    start, durable, policy: str, call: str, meanwhile: str
) -> None:
    """The instance ends (or its history is purged) after the reads that saw it running:
    the Stop or terminate gets 410 (or 404), and the start goes ahead."""
    durable.put("ended", "Running")
    durable.fail_next(
        "status",
        202,
        {
            "name": "SingletonOrchestrator",
            "instanceId": "ended",
            "runtimeStatus": "Running",
            "createdTime": "2026-01-05T03:00:00Z",
        },
        times=2,
    )  # the reads before and under the lock still see it running
    if meanwhile == "purged":
        del durable.instances["ended"]
    else:
        durable.set_status("ended", meanwhile)
    response = await start("ended", query=f"onConflict={policy}")
    assert response.status_code == 202
    assert durable.calls[call] == 1, durable.calls
    assert durable.events == [] and durable.terminations == []  # it reached no instance
    assert durable.accepted_starts == [("SingletonOrchestrator", "ended")]


async def test_stop_existing_is_the_app_default_when_set(start, durable, monkeypatch) -> None:
    await change_setting(monkeypatch, "SINGLETON_DEFAULT_ON_CONFLICT", "stopExisting")
    durable.reset(stop_delay=0.1)
    durable.put("default", "Running")
    assert (await start("default")).status_code == 202
    assert [(i, e) for i, e, _ in durable.events] == [("default", "Stop")]


@pytest.mark.parametrize("status", ["Completed", "Failed"])
async def test_terminate_existing_on_a_finished_instance_just_starts(
    start, durable, status: str
) -> None:
    durable.put("report", status)
    assert (await start("report", query="onConflict=terminateExisting")).status_code == 202
    assert durable.terminations == []


async def test_reject_is_the_default(start, durable) -> None:
    durable.put("report", "Suspended")
    problem(await start("report", query="onConflict=reject"), 409, "instance-active")


# -- reuse ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status,code", [("Completed", 409), ("Failed", 202), ("Terminated", 202), ("Canceled", 202)]
)
async def test_allow_duplicate_failed_only(start, durable, status: str, code: int) -> None:
    durable.put("report", status)
    response = await start("report", query="reuse=allowDuplicateFailedOnly")
    assert response.status_code == code
    if code == 409:
        body = problem(response, 409, "instance-finished")
        assert body["runtimeStatus"] == "Completed"
        assert "allowDuplicateFailedOnly" in body["detail"]
        assert durable.accepted_starts == []


@pytest.mark.parametrize("status", ["Completed", "Failed", "Terminated", "Canceled"])
async def test_reject_duplicate_never_reuses_a_finished_id(start, durable, status: str) -> None:
    durable.put("report", status)
    body = problem(await start("report", query="reuse=rejectDuplicate"), 409, "instance-finished")
    assert body["runtimeStatus"] == status
    assert durable.accepted_starts == []


async def test_reject_duplicate_starts_a_new_id(start, durable) -> None:
    assert (await start("fresh", query="reuse=rejectDuplicate")).status_code == 202


async def test_reuse_rules_are_checked_again_under_the_lock(start, durable) -> None:
    """The first read missed an instance that finished meanwhile; the extension would
    overwrite it, so the read under the lock is what keeps rejectDuplicate true."""
    durable.put("report", "Completed")
    durable.fail_next("status", 404)
    problem(await start("report", query="reuse=rejectDuplicate"), 409, "instance-finished")
    assert durable.accepted_starts == []
    assert durable.calls["status"] == 2


# -- app-wide defaults ---------------------------------------------------------------


async def test_app_settings_set_the_defaults_and_the_query_overrides(
    start, durable, monkeypatch
) -> None:
    await change_setting(monkeypatch, "SINGLETON_DEFAULT_ON_CONFLICT", "useExisting")
    await change_setting(monkeypatch, "SINGLETON_DEFAULT_REUSE", "rejectDuplicate")
    durable.put("running", "Running")
    durable.put("done", "Completed")
    assert (await start("running")).status_code == 200
    assert (await start("running", query="onConflict=reject")).status_code == 409
    assert (await start("done")).status_code == 409
    assert (await start("done", query="reuse=allowDuplicate")).status_code == 202


@pytest.mark.parametrize(
    "query",
    ["onConflict=Reject", "reuse=allowduplicate", "onConflict=reject&onConflict=useExisting"],
)
async def test_bad_policy_values_are_400_and_start_nothing(start, durable, query: str) -> None:
    body = problem(await start("report", query=query), 400, "invalid-query-parameter")
    assert body["allowed"]
    assert sum(durable.calls.values()) == 0
