"""Waiting with a deadline: the one way the app pauses between two looks at something,
with pauses that start short, double up to a cap, are jittered and never pass the deadline."""

from __future__ import annotations

import asyncio
import datetime
import math
import random
import time
from typing import AsyncIterator, Awaitable, Callable, TypeVar

T = TypeVar("T")


def utc_now() -> datetime.datetime:
    """The wall-clock time now, in UTC: what the app dates its records and reads ages by."""
    return datetime.datetime.now(datetime.timezone.utc)


class Pauses:
    """Growing, jittered pauses until a deadline ``within`` seconds from now: the
    ``first`` doubles up to ``most``, each scaled by a random factor from ``1 - jitter``
    to ``1 + jitter``, on ``clock`` and ``sleep`` (the event loop's, unless a test gives
    others)."""

    def __init__(
        self,
        first: float,
        most: float,
        within: float,
        jitter: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """See the class docstring."""
        self._next = first
        self._most = most
        self._jitter = jitter
        self._clock = clock
        self._sleep = sleep
        self._deadline = clock() + within

    def remaining(self) -> float:
        """Seconds left until the deadline (0 once it has passed)."""
        return max(self._deadline - self._clock(), 0.0)

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self.remaining() <= 0

    async def sleep(self, cap: float = math.inf) -> None:
        """Pause for the next pause, at most ``cap`` seconds and never past the deadline."""
        pause = self._next * random.uniform(1 - self._jitter, 1 + self._jitter)
        self._next = min(self._next * 2, self._most)
        await self._sleep(max(min(pause, cap, self.remaining()), 0.0))

    async def looks(
        self,
        look: Callable[[], Awaitable[T]],
        first: "tuple[T] | None" = None,
        cap: Callable[[], float] = lambda: math.inf,
    ) -> AsyncIterator[T]:
        """What ``look`` sees now (or ``first[0]``, when given, without a look), then after
        each pause (at most ``cap()`` s), until a pause would end past the deadline: the
        caller leaves the loop once it has seen what it waits for, and reads the loop's
        end as the time-out."""
        seen = first[0] if first is not None else await look()
        while True:
            yield seen
            if self.expired():
                return
            await self.sleep(cap=cap())
            seen = await look()
