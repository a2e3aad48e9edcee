"""The blob-lease lock on a real Azurite, and the starter's answers around it."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
from azure.storage.blob.aio import BlobServiceClient

from singleton.lock import LEASE_SECONDS, LockUnavailable, StartLocks, lock_blob_name
from singleton.settings import StorageConnection
from singleton.storage import blob_service_client, shared_container
from tests.support.azurite import connection_string, free_port


@pytest.fixture
async def locks(azurite, app_env):
    container = shared_container(StorageConnection(azurite.connection_string), app_env)
    return StartLocks(container)


async def raw_lease(azurite, container: str, blob: str):
    """Take a lease the way a holder that then crashes would: never released."""
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    client = service.get_blob_client(container, blob)
    await client.upload_blob(b"", overwrite=True)
    return service, await client.acquire_lease(lease_duration=LEASE_SECONDS)


def test_lock_names_are_per_task_hub_and_id() -> None:
    assert lock_blob_name("TestHubName", "Nightly-Import") == "testhubname/Nightly-Import"
    assert lock_blob_name("HUB", "a") == lock_blob_name("hub", "a")
    assert lock_blob_name("hub", "a") != lock_blob_name("hub", "A")


async def test_first_use_creates_container_and_blob_then_excludes(locks) -> None:
    held = await locks.try_acquire("TestHubName", "job")
    assert held is not None
    assert await locks.try_acquire("testhubname", "job") is None  # same hub, any case
    assert await locks.try_acquire("TestHubName", "other-job") is not None
    await held.release()
    again = await locks.try_acquire("TestHubName", "job")
    assert again is not None
    await again.release()


async def test_unreachable_storage_raises_lock_unavailable() -> None:
    dead = StorageConnection(connection_string(free_port()))
    async with blob_service_client(dead) as service:
        locks = StartLocks(service.get_container_client("locks"))
        began = time.monotonic()
        with pytest.raises(LockUnavailable):
            await locks.try_acquire("hub", "job")
        assert time.monotonic() - began < 5  # fails fast, not after the SDK's long retries


async def test_storage_down_is_503_and_nothing_starts(start, durable, monkeypatch) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", connection_string(free_port()))
    response = await start("job")
    assert response.status_code == 503
    body = json.loads(response.get_body())
    assert body["type"].endswith(":storage-unavailable")
    assert int(response.headers["Retry-After"]) > 0
    assert durable.accepted_starts == []
    assert "devstoreaccount1" not in response.get_body().decode()


async def test_conflict_fast_path_needs_no_storage(start, durable, monkeypatch) -> None:
    """A 409 for a running instance never touches storage, so it works even without it."""
    monkeypatch.setenv("AzureWebJobsStorage", connection_string(free_port()))
    durable.put("job", "Running")
    assert (await start("job")).status_code == 409


async def test_held_lease_gives_503_after_the_wait_and_never_delays_other_ids(
        start, durable, azurite, app_env, monkeypatch) -> None:
    monkeypatch.setenv("SINGLETON_LOCK_WAIT_SECONDS", "0.5")
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


async def test_crashed_holders_lease_expires_and_a_live_holder_keeps_renewing(
        start, durable, azurite, app_env, monkeypatch) -> None:
    """A lease nobody renews blocks for at most LEASE_SECONDS; one that is renewed holds."""
    monkeypatch.setenv("SINGLETON_LOCK_WAIT_SECONDS", "1")
    await start("warm-up")
    service, _crashed = await raw_lease(azurite, app_env,
                                        lock_blob_name("TestHubName", "crashed"))
    renewing = StartLocks(shared_container(StorageConnection(azurite.connection_string), app_env),
                          renew_every=2)
    held = await renewing.try_acquire("TestHubName", "held")
    try:
        assert (await start("crashed")).status_code == 503
        await asyncio.sleep(LEASE_SECONDS + 1.5)
        assert (await start("crashed")).status_code == 202  # expired on its own
        assert (await start("held")).status_code == 503  # renewed past LEASE_SECONDS
    finally:
        await held.release()
        await service.close()
    assert (await start("held")).status_code == 202
