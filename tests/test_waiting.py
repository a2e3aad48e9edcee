"""Pauses: growing, jittered, capped, and never past their deadline (a fake clock)."""

from __future__ import annotations

from typing import List

import pytest

from durable_singleton._waiting import Pauses


class FakeTime:
    """A clock that moves only when slept through."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: List[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_pauses_double_up_to_the_most_and_stop_at_the_deadline() -> None:
    time = FakeTime()
    pauses = Pauses(0.25, 2.0, 5.0, clock=time.clock, sleep=time.sleep)
    while not pauses.expired():
        await pauses.sleep()
    assert time.slept == [0.25, 0.5, 1.0, 2.0, 1.25]  # the last one cut at the deadline
    assert pauses.remaining() == 0


async def test_a_cap_shortens_one_pause_only() -> None:
    time = FakeTime()
    pauses = Pauses(1.0, 8.0, 60.0, clock=time.clock, sleep=time.sleep)
    await pauses.sleep(cap=0.1)
    await pauses.sleep()
    assert time.slept == [0.1, 2.0]


@pytest.mark.parametrize("jitter", [0.0, 0.5])
async def test_jitter_stays_within_its_bounds(jitter: float) -> None:
    time = FakeTime()
    pauses = Pauses(0.02, 0.5, 1000.0, jitter=jitter, clock=time.clock, sleep=time.sleep)
    for _ in range(200):
        await pauses.sleep()
    expected = [min(0.02 * 2**i, 0.5) for i in range(200)]
    for slept, base in zip(time.slept, expected, strict=True):
        assert base * (1 - jitter) - 1e-12 <= slept <= base * (1 + jitter) + 1e-12
    assert (len(set(time.slept)) > 10) is (jitter > 0)


async def test_an_expired_deadline_does_not_sleep() -> None:
    time = FakeTime()
    pauses = Pauses(1.0, 1.0, 0.0, clock=time.clock, sleep=time.sleep)
    assert pauses.expired()
    await pauses.sleep()
    assert time.slept == [0.0]


async def test_looks_are_made_until_the_deadline_and_the_first_can_be_given() -> None:
    time = FakeTime()
    seen: List[float] = []

    async def look() -> float:
        seen.append(time.now)
        return time.now

    pauses = Pauses(1.0, 1.0, 2.5, clock=time.clock, sleep=time.sleep)
    got = [value async for value in pauses.looks(look, first=(0.0,), cap=lambda: 0.75)]
    # The given first, then a look after each pause (capped) until the deadline.
    assert got == [0.0, 100.75, 101.5, 102.25, 102.5]
    assert seen == got[1:]
    assert time.slept == [0.75, 0.75, 0.75, 0.25]


async def test_a_caller_that_has_seen_enough_makes_no_more_looks() -> None:
    time = FakeTime()
    looks = 0

    async def look() -> int:
        nonlocal looks
        looks += 1
        return looks

    pauses = Pauses(1.0, 1.0, 60.0, clock=time.clock, sleep=time.sleep)
    async for value in pauses.looks(look):
        if value == 3:
            break
    assert looks == 3 and time.slept == [1.0, 1.0]
