"""The blob-lease lock on a real Azurite, and the starter's answers around it."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from azure.storage.blob.aio import BlobServiceClient

from durable_singleton._lock import (
    LEASE_SECONDS,
    LeaseStore,
    LockUnavailable,
    StartLocks,
    lock_blob_name,
)
from durable_singleton._settings import StorageConnection
from durable_singleton._storage import blob_service_client
from tests.support.app import app, change_setting, root_of, settled
from tests.support.azurite import connection_string, free_port


def lock_container(name: str):
    """A client for the lock container ``name`` on the app's own Blob Storage client."""
    return root_of(app).container(name)


@pytest.fixture
async def locks(azurite, app_env):
    return StartLocks(LeaseStore(lock_container(app_env), 5))


async def raw_lease(azurite, container: str, blob: str):
    """Take a lease the way a holder that then crashes would: never released."""
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    client = service.get_blob_client(container, blob)
    await client.upload_blob(b"", overwrite=True)
    return service, await client.acquire_lease(lease_duration=LEASE_SECONDS)


def test_lock_names_are_per_task_hub_and_id() -> None:
    assert lock_blob_name("TestHubName", "Nightly-Import") == "testhubname/Nightly-Import.lock"
    assert lock_blob_name("HUB", "a") == lock_blob_name("hub", "a")
    assert lock_blob_name("hub", "a") != lock_blob_name("hub", "A")


async def test_first_use_creates_container_and_blob_then_excludes(locks) -> None:
    held = await locks.try_acquire("TestHubName", "job")
    assert held is not None
    assert await locks.try_acquire("testhubname", "job") is None  # same hub, any case
    other = await locks.try_acquire("TestHubName", "other-job")
    assert other is not None
    await other.release()
    await held.release()
    again = await locks.try_acquire("TestHubName", "job")
    assert again is not None
    await again.release()


async def test_unreachable_storage_raises_lock_unavailable() -> None:
    dead = StorageConnection(connection_string(free_port()))
    async with blob_service_client(dead) as service:
        locks = StartLocks(LeaseStore(service.get_container_client("locks"), 5))
        began = time.monotonic()
        with pytest.raises(LockUnavailable):
            await locks.try_acquire("hub", "job")
        assert time.monotonic() - began < 5  # fails fast, not after the SDK's long retries


async def test_storage_down_is_503_and_nothing_starts(start, durable, monkeypatch) -> None:
    await change_setting(monkeypatch, "AzureWebJobsStorage", connection_string(free_port()))
    response = await start("job")
    assert response.status_code == 503
    body = json.loads(response.get_body())
    assert body["type"].endswith(":storage-unavailable")
    assert int(response.headers["Retry-After"]) > 0
    assert durable.accepted_starts == []
    assert "devstoreaccount1" not in response.get_body().decode()


async def test_conflict_fast_path_needs_no_storage(start, durable, monkeypatch) -> None:
    """A 409 for a running instance never touches storage, so it works even without it."""
    await change_setting(monkeypatch, "AzureWebJobsStorage", connection_string(free_port()))
    durable.put("job", "Running")
    assert (await start("job")).status_code == 409


async def test_held_lease_gives_503_after_the_wait_and_never_delays_other_ids(
    start, durable, azurite, app_env, monkeypatch
) -> None:
    await change_setting(monkeypatch, "SINGLETON_LOCK_WAIT_SECONDS", "0.5")
    await start("warm-up")  # creates the container
    service, lease = await raw_lease(azurite, app_env, lock_blob_name("TestHubName", "busy"))
    try:
        began = time.monotonic()
        busy, free = await asyncio.gather(start("busy"), start("free"))
        assert busy.status_code == 503
        assert json.loads(busy.get_body())["type"].endswith(":lock-busy")
        assert busy.headers["Retry-After"]
        assert free.status_code == 202
        assert 0.4 < time.monotonic() - began < 3
        assert ("SingletonOrchestrator", "busy") not in durable.accepted_starts
    finally:
        await lease.release()
        await service.close()


async def test_callers_in_one_process_share_one_storage_attempt(
    azurite, app_env, blob_requests
) -> None:
    locks = StartLocks(LeaseStore(root_of(blob_requests.app).container(app_env), 5))
    first = await locks.try_acquire("hub", "shared")
    assert first is not None
    sent = blob_requests.requests
    assert await locks.try_acquire("hub", "shared") is None  # decided locally
    assert blob_requests.requests == sent
    waiter = asyncio.create_task(locks.wait_for_local_holder("hub", "shared", timeout=5))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    first.release_in_background()
    assert await asyncio.wait_for(waiter, 1) is True  # woken when the holder let go
    assert await locks.wait_for_local_holder("hub", "shared", timeout=5) is False
    await locks.close()
    again = await locks.try_acquire("hub", "shared")
    assert again is not None  # released in storage too
    await again.release()


async def test_a_lock_learns_which_lock_blobs_exist(azurite, app_env, blob_requests) -> None:
    """The first use of an id in a process creates its blob before the lease request;
    afterwards the lease request alone, until the memory of known blobs is full."""
    container = root_of(blob_requests.app).container(app_env)
    locks = StartLocks(LeaseStore(container, 5, known_blobs=2))
    await (await locks.try_acquire("hub", "warm-up")).release()  # the container exists

    async def requests_for(instance_id: str) -> int:
        before = blob_requests.requests
        held = await locks.try_acquire("hub", instance_id)
        assert held is not None
        spent = blob_requests.requests - before
        await held.release()
        return spent

    assert await requests_for("new") == 2  # create the blob, take the lease
    assert await requests_for("new") == 1  # known: the lease request only
    assert await requests_for("other") == 2
    assert await requests_for("third") == 2  # the two newest are kept: "new" is forgotten...
    assert await requests_for("new") == 2  # ...so "new" is created (it exists: fine)
    assert await requests_for("third") == 1
    # Another process knows nothing yet: it pays the create once, and still excludes.
    elsewhere = StartLocks(LeaseStore(container, 5))
    held = await elsewhere.try_acquire("hub", "third")
    assert held is not None
    assert await locks.try_acquire("hub", "third") is None  # held elsewhere, seen in storage
    await held.release()


async def test_a_burst_in_one_process_costs_a_few_storage_requests(
    start, durable, blob_requests
) -> None:
    durable.reset(start_check_delay=0.05)
    responses = await asyncio.gather(*[start("burst") for _ in range(40)])
    assert sorted(r.status_code for r in responses) == [202] + [409] * 39
    await settled(blob_requests.app)
    # The container, the blob, the lease and its release, and the next-run channel's read
    # and write when it is opened and its write when the start is confirmed
    # (SingletonOrchestrator takes next runs): not one request per caller.
    assert blob_requests.requests <= 8


async def test_local_waiters_retry_when_the_lock_is_held_elsewhere(
    start, durable, azurite, app_env, monkeypatch, blob_requests
) -> None:
    await change_setting(monkeypatch, "SINGLETON_LOCK_WAIT_SECONDS", "0.6")
    await start("warm-up")
    service, lease = await raw_lease(azurite, app_env, lock_blob_name("TestHubName", "remote"))
    try:
        responses = await asyncio.gather(*[start("remote") for _ in range(5)])
        assert [r.status_code for r in responses] == [503] * 5
        assert durable.accepted_starts == [("SingletonOrchestrator", "warm-up")]
    finally:
        await lease.release()
        await service.close()
    assert (await start("remote")).status_code == 202


# -- the lock's parts, each on its own ---------------------------------------------------


async def test_local_attempts_make_one_caller_the_attempt_and_wake_the_others() -> None:
    from durable_singleton._lock import LocalAttempts

    attempts = LocalAttempts()
    assert await attempts.wait("x", timeout=1) is False  # nobody here has it
    finish = attempts.begin("x")
    assert finish is not None and attempts.begin("x") is None
    waiter = asyncio.create_task(attempts.wait("x", timeout=5))
    await asyncio.sleep(0)
    assert not waiter.done()
    finish(None)
    assert await asyncio.wait_for(waiter, 1) is True
    assert attempts.begin("x") is not None  # free again once finished


async def test_a_failed_attempt_gives_its_waiters_the_same_error() -> None:
    from durable_singleton._lock import LocalAttempts

    attempts = LocalAttempts()
    finish = attempts.begin("x")
    waiters = [asyncio.create_task(attempts.wait("x", timeout=5)) for _ in range(3)]
    await asyncio.sleep(0)
    error = LockUnavailable("storage did not answer in time")
    finish(error)
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert results == [error] * 3


async def test_background_close_waits_for_work_spawned_meanwhile() -> None:
    from durable_singleton._lock import Background

    background, done = Background(), []

    async def second() -> None:
        await asyncio.sleep(0.01)
        done.append("second")

    async def first() -> None:
        await asyncio.sleep(0.01)
        background.spawn(second())
        done.append("first")

    background.spawn(first())
    await background.close()
    assert done == ["first", "second"]


def test_background_close_ends_when_the_work_just_finished() -> None:
    """Work that finished in the loop iteration before close() has its bookkeeping
    callback still queued; close() must not spin on it (it would never yield, so it runs
    in a thread of its own here, and the test only waits so long)."""
    import threading

    from durable_singleton._lock import Background

    async def scenario() -> None:
        background = Background()

        async def quick() -> None:
            return None

        background.spawn(quick())
        await asyncio.sleep(0)  # quick() runs and ends; its done callbacks are queued
        await background.close()

    closing = threading.Thread(target=asyncio.run, args=(scenario(),), daemon=True)
    closing.start()
    closing.join(timeout=5)
    assert not closing.is_alive()


async def test_the_lease_store_alone_excludes_a_second_holder(azurite, app_env) -> None:
    store = LeaseStore(lock_container(app_env), storage_timeout=5)
    first, second = store.lease("hub/one.lock"), store.lease("hub/one.lock")
    assert (await store.acquire("hub/one.lock", first))[0] is True
    assert (await store.acquire("hub/one.lock", second))[0] is False
    assert await store.renew(first) > 0
    await store.release(first)
    assert (await store.acquire("hub/one.lock", second))[0] is True
    await store.release(second)
