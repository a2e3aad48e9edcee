"""Stuck Pending instances: every answer that describes one says so, recovery is an
explicit terminateExisting, and the conflict path costs what it did."""

from __future__ import annotations

import logging

import pytest

from tests.support.answers import body, problem
from tests.support.app import change_setting, settled
from tests.support.durable_double import ago


async def test_a_409_on_a_stuck_instance_says_so_and_how_to_recover(start, durable) -> None:
    durable.put("nightly", "Pending", created=ago(3600))
    document = problem(await start("nightly"), 409, "instance-active")
    assert document["stuck"] is True
    assert 3590 <= document["pendingSeconds"] <= 3700
    assert "onConflict=terminateExisting" in document["detail"]
    assert "stuck" in document["detail"]
    assert durable.accepted_starts == []


async def test_a_young_pending_or_a_running_instance_is_not_stuck(start, durable) -> None:
    durable.put("fresh", "Pending", created=ago(30))
    document = problem(await start("fresh"), 409, "instance-active")
    assert document["stuck"] is False
    assert 29 <= document["pendingSeconds"] <= 120
    assert "stuck" not in document["detail"]
    durable.put("old-running", "Running", created=ago(86400))
    document = problem(await start("old-running"), 409, "instance-active")
    assert document["stuck"] is False and "pendingSeconds" not in document


async def test_the_threshold_is_the_setting(start, durable, monkeypatch) -> None:
    await change_setting(monkeypatch, "SINGLETON_STUCK_PENDING_SECONDS", "20")
    durable.put("nightly", "Pending", created=ago(30))
    assert problem(await start("nightly"), 409, "instance-active")["stuck"] is True


async def test_get_and_use_existing_describe_a_stuck_instance(start, instance, durable) -> None:
    durable.put("nightly", "Pending", created=ago(700))
    document = body(await instance("GET", "nightly"))
    assert document["stuck"] is True and document["pendingSeconds"] >= 700
    answer = await start("nightly", query="onConflict=useExisting")
    assert answer.status_code == 200
    assert body(answer)["stuck"] is True


async def test_terminate_existing_recovers_a_stuck_instance(start, durable, monkeypatch) -> None:
    # A DurableTask.AzureStorage with Azure/durabletask#1256: terminate ends a Pending one.
    durable.put("nightly", "Pending", created=ago(3600))
    response = await start("nightly", query="onConflict=terminateExisting")
    assert response.status_code == 202, response.get_body()
    assert [i for i, _ in durable.terminations] == ["nightly"]
    assert durable.accepted_starts == [("SingletonOrchestrator", "nightly")]


async def test_a_stuck_instance_terminate_cannot_end_is_a_timeout_with_the_facts(
    start, durable, monkeypatch
) -> None:
    # An older provider: terminate is accepted and a Pending instance stays Pending.
    await change_setting(monkeypatch, "SINGLETON_TERMINATE_TIMEOUT_SECONDS", "1")
    durable.reset(terminate_ends_pending=False)
    durable.put("nightly", "Pending", created=ago(3600))
    document = problem(
        await start("nightly", query="onConflict=terminateExisting"), 409, "termination-timeout"
    )
    assert document["stuck"] is True and document["pendingSeconds"] >= 3600
    assert "docs/operate.md" in document["detail"]
    assert durable.accepted_starts == []
    assert durable.instances["nightly"].status == "Pending"


async def test_the_log_line_names_a_stuck_instance(start, durable, caplog) -> None:
    caplog.set_level(logging.INFO, logger="durable_singleton._starter")
    durable.put("nightly", "Pending", created=ago(3600))
    durable.put("fine", "Running")
    await start("nightly")
    await start("fine")
    [stuck] = [r.getMessage() for r in caplog.records if "instance=nightly" in r.getMessage()]
    assert "decision=rejected-active" in stuck and " stuck=true pending_s=" in stuck
    [fine] = [r.getMessage() for r in caplog.records if "instance=fine" in r.getMessage()]
    assert "stuck" not in fine


async def test_the_conflict_path_on_a_stuck_instance_costs_what_it_did(
    start, durable, blob_requests
) -> None:
    await start("nightly")  # met by this process: its lock blob exists
    await settled(blob_requests.app)
    durable.put("nightly", "Pending", created=ago(3600))
    durable.calls.clear()
    before = blob_requests.requests
    assert problem(await start("nightly"), 409, "instance-active")["stuck"] is True
    assert durable.calls == {"status": 1}
    assert blob_requests.requests == before


@pytest.mark.parametrize("value", ["0", "9", "-5", "ten", "2678401"])
async def test_a_bad_threshold_is_misconfigured(start, durable, monkeypatch, value) -> None:
    await change_setting(monkeypatch, "SINGLETON_STUCK_PENDING_SECONDS", value)
    durable.put("nightly", "Pending", created=ago(3600))
    document = problem(await start("nightly"), 500, "misconfigured")
    assert "SINGLETON_STUCK_PENDING_SECONDS" in document["detail"]
