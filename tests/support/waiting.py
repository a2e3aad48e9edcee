"""Waiting in a test for something another thread or process does, bounded."""

from __future__ import annotations

import asyncio
from typing import Any, Callable


async def until(seen: Callable[[], Any], seconds: float = 5.0) -> None:
    """Wait until ``seen()`` holds, polling every 10 ms; TimeoutError after ``seconds``."""

    async def poll() -> None:
        while not seen():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), seconds)
