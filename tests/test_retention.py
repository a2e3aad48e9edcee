"""The retention timer: what it removes, what it never touches, its bounds, and two
app instances running it at once."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import time
from typing import Any, List

import pytest
from azure.functions.timer import TimerRequest
from azure.storage.blob.aio import BlobServiceClient

from durable_singleton._lock import lock_blob_name
from durable_singleton._retention import run_retention
from durable_singleton._settings import Retention
from durable_singleton.errors import DurableUnavailable
from tests.support.app import app, change_setting, root_of, settled
from tests.support.processes import AppProcesses

HUB = "TestHubName"
FUTURE = datetime.timedelta(days=40)


def ago(days: float) -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days)


@pytest.fixture
async def containers(app_env: str, azurite: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The test's lock container and a job container of its own, as clients."""
    jobs = f"{app_env}-jobs"
    monkeypatch.setenv("SINGLETON_JOB_CONTAINER", jobs)
    await app.close()
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    locks, staged = service.get_container_client(app_env), service.get_container_client(jobs)
    for container in (locks, staged):
        await container.create_container()
    yield locks, staged
    await service.close()


async def names(container: Any) -> List[str]:
    return sorted([blob.name async for blob in container.list_blobs()])


async def tick(durable: Any, now_ahead: datetime.timedelta = datetime.timedelta(), **knobs: Any):
    """One tick of the app's retention with ``knobs`` (Retention's fields), reckoned
    ``now_ahead`` from now."""
    root = root_of(app)
    retention = Retention(enabled=True, **knobs)
    now = datetime.datetime.now(datetime.timezone.utc) + now_ahead
    return await run_retention(root, root.durable(durable.starter()), retention, now)


async def make_lock(instance_id: str) -> None:
    """The id's lock blob, as a start leaves it (free)."""
    held = await root_of(app).locks().try_acquire(HUB, instance_id)
    assert held is not None
    await held.release()


async def test_off_by_default_it_does_nothing(durable, containers, caplog) -> None:
    caplog.set_level(logging.INFO, logger="durable_singleton._starter")
    durable.put("old", "Completed", created=ago(400))
    assert await app.retention_tick(TimerRequest(), durable.starter()) is None
    assert sum(durable.calls.values()) == 0 and "old" in durable.instances
    [line] = [r.getMessage() for r in caplog.records if "SingletonRetention" in r.getMessage()]
    assert "decision=retention-disabled" in line


async def test_the_timer_purges_the_apps_old_finished_instances_only(
    durable, containers, monkeypatch, caplog
) -> None:
    caplog.set_level(logging.INFO)
    await change_setting(monkeypatch, "SINGLETON_RETENTION_ENABLED", "true")
    durable.put("old-done", "Completed", created=ago(40))
    durable.put("old-failed", "Failed", created=ago(31))
    durable.put("recent", "Completed", created=ago(1))
    durable.put("old-running", "Running", created=ago(40))
    durable.put("old-pending", "Pending", created=ago(40))
    durable.put("others", "Completed", name="OtherOrchestrator", created=ago(40))
    report = await app.retention_tick(TimerRequest(), durable.starter())
    assert report is not None and report.stopped is None
    assert sorted(report.purged) == ["old-done", "old-failed"]
    assert sorted(durable.purged) == ["old-done", "old-failed"]
    assert {"recent", "old-running", "old-pending", "others"} <= set(durable.instances)
    messages = [r.getMessage() for r in caplog.records]
    assert "SingletonRetention removed instance old-done" in messages
    [line] = [m for m in messages if m.startswith("SingletonRetention instance=")]
    assert "decision=retention-done" in line and " purged=2 " in line


async def test_an_instance_running_again_under_its_lease_is_kept(durable, containers) -> None:
    # An older extension purges whatever it is asked to: the check under the lease is
    # what keeps a restarted id's running instance.
    durable.reset(purge_refuses_active=False)
    durable.put("old-done", "Completed", created=ago(40))
    running = dict(durable.instances["old-done"].body("old-done"), runtimeStatus="Running")
    durable.fail_next("status", 202, running)
    report = await tick(durable)
    assert report.purged == [] and durable.purged == []


async def test_an_id_whose_lease_is_held_is_passed_by(durable, containers) -> None:
    durable.put("old-done", "Completed", created=ago(40))
    held = await root_of(app).locks().try_acquire(HUB, "old-done")
    assert held is not None
    try:
        report = await tick(durable)
    finally:
        await held.release()
    assert report.busy == ["old-done"] and durable.purged == []
    assert (await tick(durable)).purged == ["old-done"]


async def test_staged_blobs_go_when_the_job_is_not_running(durable, containers) -> None:
    _, staged = containers
    durable.put("ended", "Terminated", created=ago(0.1))
    durable.put("running", "Running", created=ago(0.1))
    for name in ("ended/k1/0", "ended/k1/1", "running/k2/0", "gone/k3/0"):
        await staged.upload_blob(name, b"[]")
    report = await tick(durable)
    assert sorted(report.staged_blobs) == ["ended/k1/0", "ended/k1/1", "gone/k3/0"]
    assert await names(staged) == ["running/k2/0"]
    assert "ended" in durable.instances  # finished recently: kept


async def test_lock_blobs_of_long_unused_free_ids_go(durable, containers) -> None:
    locks, _ = containers
    for instance_id in ("ghost", "busy", "leased", "recent-done"):
        await make_lock(instance_id)
    durable.put("busy", "Running")
    durable.put("recent-done", "Completed")
    held = await root_of(app).locks().try_acquire(HUB, "leased")
    assert held is not None
    try:
        report = await tick(durable, FUTURE, purge_instances=False)
    finally:
        await held.release()
    assert report.lock_blobs == ["ghost"]
    left = await names(locks)
    assert lock_blob_name(HUB, "ghost") not in left
    for kept in ("busy", "leased", "recent-done"):
        assert lock_blob_name(HUB, kept) in left
    # A start after its lock blob was deleted takes the lock again.
    await app.close()
    durable.reset()
    from tests.support.requests import start_request

    response = await app.http_start(
        start_request("SingletonOrchestrator", "ghost"), durable.starter()
    )
    assert response.status_code == 202


async def test_a_recent_lock_blob_and_a_live_key_record_are_kept(
    start, durable, containers, monkeypatch
) -> None:
    locks, _ = containers
    await make_lock("fresh-ghost")
    await change_setting(monkeypatch, "SINGLETON_IDEMPOTENCY_TTL_SECONDS", "2592000")
    assert (await start("keyed", key="key-1")).status_code == 202
    await settled(app)  # the start's lease, released in the background
    durable.set_status("keyed", "Completed")
    # Two days on: the instance finished more than a day ago and is purged; its lock
    # blob holds the key's record for 28 more days, and stays.
    report = await tick(durable, datetime.timedelta(days=2), days=1)
    assert report.purged == ["keyed"] and report.lock_blobs == []
    assert lock_blob_name(HUB, "keyed") in await names(locks)
    assert lock_blob_name(HUB, "fresh-ghost") in await names(locks)


async def test_the_bounds_stop_a_tick_and_the_next_goes_on(durable, containers) -> None:
    for n in range(12):
        durable.put(f"old-{n:02}", "Completed", created=ago(40))
    purged: List[str] = []
    reports = []
    for _ in range(30):
        report = await tick(durable, max_calls=10)
        reports.append(report)
        purged += report.purged
        assert report.calls <= 10
        if report.stopped is None:
            break
    assert reports[0].stopped == "calls" and 0 < len(reports[0].purged) < 12
    assert sorted(purged) == [f"old-{n:02}" for n in range(12)] == sorted(durable.purged)


async def test_the_time_bound_stops_a_tick(durable, containers) -> None:
    durable.reset(latency=0.2)
    for n in range(40):
        durable.put(f"old-{n:02}", "Completed", created=ago(40))
    began = time.monotonic()
    report = await tick(durable, max_seconds=5)
    # Within the bound and one call's time limit: no call is cut off halfway.
    assert report.stopped == "time" and time.monotonic() - began < 5 + 5 + 1
    assert 0 < len(report.purged) < 40
    assert sorted(durable.purged) == sorted(report.purged)


async def test_a_purge_whose_answer_is_lost_keeps_the_lease(
    start, durable, containers, monkeypatch
) -> None:
    # The purge may still land after the call gave up: no start of the id may happen
    # before it does, or it could purge the new run's instance (older builds purge
    # whatever they are asked to).
    await change_setting(monkeypatch, "SINGLETON_DURABLE_TIMEOUT_SECONDS", "0.5")
    await change_setting(monkeypatch, "SINGLETON_LOCK_WAIT_SECONDS", "0.5")
    durable.reset(purge_delay=1.5, purge_refuses_active=False)
    durable.put("old-done", "Completed", created=ago(40))
    with pytest.raises(DurableUnavailable):
        await tick(durable)
    assert await root_of(app).locks().try_acquire(HUB, "old-done") is None  # still held
    document = json.loads((await start("old-done")).get_body())
    assert document["type"].endswith(":lock-busy")
    # The holder is the retention tick, not a start: the answer does not say it is one.
    assert "starting or replacing" not in document["detail"]
    await asyncio.sleep(1.5)
    assert durable.purged == ["old-done"]  # it landed, with no new run to take with it


async def test_keeping_instances_keeps_reject_duplicate(start, durable, containers) -> None:
    durable.put("once", "Completed", created=ago(40))
    assert (await tick(durable, purge_instances=False)).purged == []
    assert (await start("once", query="reuse=rejectDuplicate")).status_code == 409
    await settled(app)
    assert (await tick(durable)).purged == ["once"]
    # Purged, the id is forgotten: rejectDuplicate starts it again.
    assert (await start("once", query="reuse=rejectDuplicate")).status_code == 202


async def test_a_refused_purge_is_left_for_the_next_tick(durable, containers) -> None:
    durable.put("old-a", "Completed", created=ago(40))
    durable.put("old-b", "Completed", created=ago(40))
    durable.fail_next("purge", 500, {"Message": "An error has occurred."})
    report = await tick(durable)
    assert len(report.failed) == 1 and len(report.purged) == 1
    assert sorted((await tick(durable)).purged + report.purged) == ["old-a", "old-b"]


@pytest.mark.parametrize(
    "name, value",
    [
        ("SINGLETON_RETENTION_DAYS", "0"),
        ("SINGLETON_RETENTION_MAX_CALLS", "5"),
        ("SINGLETON_RETENTION_MAX_SECONDS", "601"),
        ("SINGLETON_RETENTION_PURGE_INSTANCES", "yes"),
    ],
)
async def test_a_bad_setting_stops_the_tick_and_says_which(
    durable, containers, monkeypatch, caplog, name, value
) -> None:
    caplog.set_level(logging.ERROR)
    await change_setting(monkeypatch, "SINGLETON_RETENTION_ENABLED", "true")
    await change_setting(monkeypatch, name, value)
    durable.put("old", "Completed", created=ago(40))
    assert await app.retention_tick(TimerRequest(), durable.starter()) is None
    assert any(name in r.getMessage() for r in caplog.records)
    assert durable.purged == []


@pytest.mark.processes
async def test_two_app_instances_at_once_remove_each_thing_once(durable, containers) -> None:
    locks, staged = containers
    old = [f"old-{n:02}" for n in range(30)]
    for instance_id in old:
        durable.put(instance_id, "Completed", created=ago(40))
        await make_lock(instance_id)  # started through the app: it has its lock blob
    for n in range(10):
        durable.put(f"active-{n}", "Running", created=ago(40))
        await staged.upload_blob(f"active-{n}/k/0", b"[]")
        await make_lock(f"active-{n}")
    for n in range(10):
        await staged.upload_blob(f"ended-{n}/k/0", b"[]")
        await make_lock(f"ghost-{n}")
    await app.close()
    processes = AppProcesses()
    start_at = time.time() + 3
    env = {"SINGLETON_RETENTION_DAYS": "30"}
    for _ in range(2):
        await processes.start(
            "-m",
            "tests.support.retention_worker",
            durable.rpc_base_url,
            str(start_at),
            "0.5",  # half a day on: the lock blobs made now are not yet idle for 30 days
            env=env,
        )
    reports = [json.loads(out) for out in await processes.outputs(120)]
    for kind in ("purged", "staged_blobs", "lock_blobs"):
        first, second = (set(r[kind]) for r in reports)
        assert not first & second, f"{kind} removed twice: {first & second}"
    purged = sorted(reports[0]["purged"] + reports[1]["purged"])
    missing = sorted(set(old) - set(purged))
    assert purged == old == sorted(durable.purged), (
        missing,
        [(r["busy"], r["failed"], r["stopped"], r["calls"]) for r in reports],
        [(m, m in durable.purged, m in durable.instances) for m in missing],
    )
    staged_removed = sorted(reports[0]["staged_blobs"] + reports[1]["staged_blobs"])
    assert staged_removed == sorted(f"ended-{n}/k/0" for n in range(10))
    assert await names(staged) == sorted(f"active-{n}/k/0" for n in range(10))
    assert all(durable.instances[f"active-{n}"].status == "Running" for n in range(10))
    # Lock blobs: the purged ids' (unused for 40 days) go, each once; the active ids'
    # and the ghosts' (made just now) stay.
    lock_removed = sorted(reports[0]["lock_blobs"] + reports[1]["lock_blobs"])
    assert lock_removed == old
    left = await names(locks)
    assert all(lock_blob_name(HUB, f"active-{n}") in left for n in range(10))


async def test_the_call_budget_is_every_call_counted_at_the_door(durable, containers) -> None:
    """docs/settings.md: SINGLETON_RETENTION_MAX_CALLS is the most storage and Durable API
    calls one tick makes. Counted where they leave the app (every Blob request the storage
    SDK sends, every request the Durable double receives), and what the tick reports."""
    from tests.support.blob_counter import RequestCounter, counted_app

    locks, _ = containers
    counter = RequestCounter()
    counted = counted_app(app, counter)
    for n in range(24):
        durable.put(f"old-{n:02}", "Completed", created=ago(40))
    try:
        reports = []
        for _ in range(40):
            root = root_of(counted)
            blob_before, durable_before = counter.requests, sum(durable.calls.values())
            now = datetime.datetime.now(datetime.timezone.utc)
            report = await run_retention(
                root, root.durable(durable.starter()), Retention(enabled=True, max_calls=10), now
            )
            await settled(counted)
            made = counter.requests - blob_before + sum(durable.calls.values()) - durable_before
            assert made == report.calls <= 10, (made, report)
            reports.append(report)
            if report.stopped is None:
                break
    finally:
        await counted.close()
    assert sorted(durable.purged) == [f"old-{n:02}" for n in range(24)]
    # No id had a lock blob before: the blobs the ticks made to lock each id are theirs
    # to delete, not "removed" as if they had been left behind.
    assert not [blob for r in reports for blob in r.lock_blobs]
    assert await names(locks) == []
