"""The lock's logic on leases kept in memory and a clock the test moves: renewal, expiry,
the fence, a paused holder, an abandoned lease. No Azurite and no real sleeps; the
storage boundary (the Storage SDK's answers, cut and stalled connections) is tested on
Azurite and through the fault proxy (tests/test_lock.py, tests/test_faults.py)."""

from __future__ import annotations

import asyncio

import pytest

from durable_singleton._lock import (
    LEASE_SECONDS,
    RENEW_EVERY_SECONDS,
    SAFETY_MARGIN_SECONDS,
    HeldLock,
    LockLost,
    StartLocks,
    lock_blob_name,
)
from tests.support.memory_leases import FakeTime, MemoryLeases

HUB = "hub"


def process(store: MemoryLeases, time: FakeTime) -> StartLocks:
    """The locks of one app process on ``store``."""
    return StartLocks(store, sleep=time.sleep)


async def take(locks: StartLocks, instance_id: str) -> HeldLock:
    held = await locks.try_acquire(HUB, instance_id)
    assert held is not None
    return held


async def test_a_renewed_lease_holds_and_one_nobody_renews_runs_out() -> None:
    time = FakeTime()
    store = MemoryLeases(time)
    ours, theirs = process(store, time), process(store, time)
    held = await take(ours, "held")
    crashed = lock_blob_name(HUB, "crashed")
    assert (await store.acquire(crashed, store.lease(crashed)))[0]  # never renewed
    await time.advance(LEASE_SECONDS - 0.5)
    assert await theirs.try_acquire(HUB, "crashed") is None
    await time.advance(1.0)
    (await take(theirs, "crashed")).release_in_background()  # it ran out on its own
    await time.advance(4 * LEASE_SECONDS)
    assert await theirs.try_acquire(HUB, "held") is None  # renewed, lease after lease
    assert store.calls["renew"] == int((4 * LEASE_SECONDS + LEASE_SECONDS) // RENEW_EVERY_SECONDS)
    await held.release()
    (await take(theirs, "held")).release_in_background()
    await ours.close()
    await theirs.close()


async def test_the_fence_costs_nothing_on_a_fresh_lease_and_renews_a_short_one() -> None:
    time = FakeTime()
    store = MemoryLeases(time)
    locks = StartLocks(store, renew_every=3600, sleep=time.sleep)  # no background renewal
    held = await take(locks, "job")
    fenced = await held.fence(10)
    assert store.calls.get("renew", 0) == 0
    assert fenced.seconds == pytest.approx(LEASE_SECONDS - SAFETY_MARGIN_SECONDS)
    await time.advance(6)
    fenced = await held.fence(10)  # 8 s were left: renewed first
    assert store.calls["renew"] == 1
    assert fenced.seconds == pytest.approx(LEASE_SECONDS - SAFETY_MARGIN_SECONDS)
    await held.release()


async def test_a_renewal_that_fails_is_retried_while_the_lease_may_hold() -> None:
    time = FakeTime()
    store = MemoryLeases(time)
    locks = process(store, time)
    held = await take(locks, "job")
    store.down = True
    await time.advance(RENEW_EVERY_SECONDS + 3.5)  # fails at 5 s, then at 6, 7 and 8 s
    assert store.refused == 4
    store.down = False
    await time.advance(1.0)
    assert store.calls["renew"] == 1
    assert held.remaining() > LEASE_SECONDS - SAFETY_MARGIN_SECONDS - 1.5
    await time.advance(LEASE_SECONDS)
    assert store.holder(held.name) is not None  # still renewed, every few seconds
    await held.release()
    await locks.close()


async def test_a_holder_whose_renewals_fail_for_a_whole_lease_acts_no_more() -> None:
    time = FakeTime()
    store = MemoryLeases(time)
    ours, theirs = process(store, time), process(store, time)
    held = await take(ours, "job")
    store.down = True
    await time.advance(LEASE_SECONDS + 1)
    store.down = False
    other = await take(theirs, "job")  # the lease ran out: another process has the id
    with pytest.raises(LockLost):
        await held.fence(1)
    with pytest.raises(LockLost):
        await held.write_metadata({"k": "v"})
    assert store.holder(held.name) is not None
    assert await store.read_metadata(held.name) == {}  # nothing written
    await other.release()
    await ours.close()
    await theirs.close()


async def test_a_paused_holder_cannot_prove_its_lease_once_another_took_the_id() -> None:
    time = FakeTime()
    store = MemoryLeases(time)
    ours, theirs = process(store, time), process(store, time)
    held = await take(ours, "job")
    time.now += LEASE_SECONDS + 5  # paused: its renewals never ran meanwhile
    other = await take(theirs, "job")
    with pytest.raises(LockLost):
        await held.fence(1)  # its renewal is refused: the blob was leased again
    with pytest.raises(LockLost):
        await held.delete_blob()
    assert store.holder(held.name) == other._lease.id
    await other.release()
    await held.release()
    assert store.holder(held.name) is None  # its release did not touch the other's lease


async def test_a_paused_holder_stops_even_when_nobody_took_the_id() -> None:
    """Storage would renew an expired lease nobody took since (BlobLeaseClient.Renew), but
    the holder cannot know that nobody did: past its proven time it tries no renewal and
    acts no more (design.md, "Fencing")."""
    time = FakeTime()
    store = MemoryLeases(time)
    held = await take(process(store, time), "job")
    time.now += LEASE_SECONDS + 5
    with pytest.raises(LockLost):
        await held.fence(5)
    assert store.calls.get("renew", 0) == 0
    await held.release()
    assert store.holder(held.name) is None


async def test_an_abandoned_lease_is_kept_until_it_runs_out() -> None:
    time = FakeTime()
    store = MemoryLeases(time)
    ours, theirs = process(store, time), process(store, time)
    held = await take(ours, "job")
    await time.advance(3)
    held.abandon()  # after a start whose answer was lost: one last renewal, no release
    await time.advance(0.5)
    assert store.calls["renew"] == 1 and store.calls.get("release", 0) == 0
    await time.advance(LEASE_SECONDS - 1)
    assert await theirs.try_acquire(HUB, "job") is None
    await time.advance(1)
    (await take(theirs, "job")).release_in_background()
    await time.advance(RENEW_EVERY_SECONDS * 3)
    assert store.calls["renew"] == 1  # the abandoned holder renews no more
    await ours.close()
    await theirs.close()


async def test_callers_of_one_process_wait_for_its_holder_without_storage_calls() -> None:
    time = FakeTime()
    store = MemoryLeases(time)
    locks = process(store, time)
    held = await take(locks, "job")
    assert await locks.try_acquire(HUB, "job") is None  # held here: no lease request
    assert store.calls["acquire"] == 1
    waiting = asyncio.create_task(locks.wait_for_local_holder(HUB, "job", 10))
    await asyncio.sleep(0)
    held.release_in_background()
    assert await waiting is True
    await locks.close()
    (await take(locks, "job")).release_in_background()
    await locks.close()
