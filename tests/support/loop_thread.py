"""An event loop in a daemon thread, for the loopback servers the tests run (the
Durable double, the fault proxy): tests on any loop, and other processes through the
port, can reach them."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable, Callable, Coroutine, Optional


class LoopThread:
    """One thread running one event loop until :meth:`stop`."""

    def __init__(self, name: str) -> None:
        """Name the thread; :meth:`start` runs it."""
        self.name = name
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None

    def start(self, opening: Callable[[], Awaitable[None]]) -> None:
        """Start the loop, run ``opening()`` on it, and return once that is done."""
        ready = threading.Event()
        loop = self.loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(opening())
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=serve, name=self.name, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{self.name} did not start")

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 5) -> Any:
        """Run ``coroutine`` on the loop from another thread; return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self, closing: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``closing()`` on the loop, then stop it and end the thread."""
        if self.loop is None:
            return
        self.run(closing(), 10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        self.loop.close()
        self.loop = None
