"""A loopback TCP proxy that cuts, delays or stalls connections on command.

It sits between the app and a dependency (Azurite, the Durable double) so tests can
break the network the way a real outage does, while both ends stay real:

- ``pass``: bytes flow both ways (``delay`` seconds added before each forwarded chunk).
- ``cut``: every open connection is reset at once and new ones are reset on accept.
- ``stall``: connections stay open but nothing is forwarded in either direction, so
  the peer sees a hung server; switching back to ``pass`` does not revive them. With
  ``match``, only a connection whose request starts with it stalls, from that request
  on (the request never reaches the dependency); the others pass.
- ``cut_responses``: requests reach the dependency, but the connection is reset as
  soon as the dependency starts answering: the request was carried out and its
  answer is lost. With ``match``, only for requests whose first bytes (the request
  line) start with it, e.g. ``b"POST /durabletask/orchestrators/"``; with ``times``, only
  that many answers, then it passes again (a client's own retry then gets through).
- ``late``: a request whose request line starts with ``match`` is held ``delay``
  seconds and then sent on, even when its client has given up meanwhile, as a request
  a slow server carries out after its client's time limit; with ``times``, only that
  many requests are held, then it passes again.

It runs its own event loop in a thread, so tests on any loop (and other processes,
through its port) can use it. ``faults`` counts the cuts, stalls and held requests it caused.
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
from typing import List, Optional, Set

from tests.support.loop_thread import LoopThread

MODES = ("pass", "cut", "stall", "cut_responses", "late")
_REQUEST_LINE = re.compile(rb"[A-Z]+ /")


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target_port``."""

    def __init__(self, target_port: int) -> None:
        """Prepare; :meth:`start` opens the port."""
        self.target_port = target_port
        self.port = 0
        self.mode = "pass"
        self.delay = 0.0
        self.match = b""
        self.times: Optional[int] = None
        self.faults = 0
        self._writers: Set[asyncio.StreamWriter] = set()
        self._server: Optional[asyncio.AbstractServer] = None
        self._serving = LoopThread("fault-proxy")

    # -- control -----------------------------------------------------------------------

    def set(
        self, mode: str, delay: float = 0.0, match: bytes = b"", times: Optional[int] = None
    ) -> None:
        """Switch to ``mode``; ``cut`` also resets every connection open now."""
        if mode not in MODES:
            raise ValueError(mode)
        self._serving.run(self._switch(mode, delay, match, times))

    async def _switch(self, mode: str, delay: float, match: bytes, times: Optional[int]) -> None:
        self.mode, self.delay, self.match, self.times = mode, delay, match, times
        if mode == "cut":
            for writer in list(self._writers):
                self._reset(writer)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> "FaultProxy":
        """Listen on a free loopback port from a background thread."""

        async def listen() -> None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]

        self._serving.start(listen)
        return self

    def stop(self) -> None:
        """Close every connection and the port, and end the thread."""

        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self._writers):
                self._reset(writer)
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        self._serving.stop(close)

    # -- forwarding --------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "cut":
            self.faults += 1
            self._reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            self._reset(writer)
            return
        self._writers.update((writer, up_writer))
        last_request = [b""]  # the start of the latest request sent on this connection
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, last_request, upstream=True),
                self._pump(up_reader, writer, last_request, upstream=False),
            )
        finally:
            for end in (writer, up_writer):
                self._writers.discard(end)
                end.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        last_request: List[bytes],
        upstream: bool,
    ) -> None:
        stalled = False
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if stalled or self._stalls(data, upstream):
                    if not stalled:
                        self.faults += 1
                    stalled = True  # swallow: the peer waits for bytes that never come
                    continue
                if upstream and _REQUEST_LINE.match(data):
                    last_request[0] = data[:200]
                cut_answer = (
                    self.mode == "cut_responses"
                    and not upstream
                    and last_request[0].startswith(self.match)
                )
                if self.mode == "cut" or cut_answer:
                    self.faults += 1
                    if cut_answer and self.times is not None:
                        self.times -= 1
                        if self.times <= 0:
                            self.mode = "pass"
                    self._reset(writer)
                    break
                held = self._holds(data, upstream)
                if held or (self.delay and self.mode == "pass"):
                    await asyncio.sleep(held or self.delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not stalled:
                self._reset(writer)

    def _stalls(self, data: bytes, upstream: bool) -> bool:
        """Whether ``data`` stalls its connection: every chunk in ``stall`` mode, or with
        ``match`` only a request that starts with it."""
        if self.mode != "stall":
            return False
        return not self.match or (upstream and data.startswith(self.match))

    def _holds(self, data: bytes, upstream: bool) -> float:
        """How long ``late`` holds ``data`` back: ``delay`` for a request that starts with
        ``match`` (counted against ``times``), else 0."""
        if self.mode != "late" or not upstream or not _REQUEST_LINE.match(data):
            return 0.0
        if not data.startswith(self.match):
            return 0.0
        self.faults += 1
        held = self.delay
        if self.times is not None:
            self.times -= 1
            if self.times <= 0:
                self.mode, self.delay = "pass", 0.0
        return held

    @staticmethod
    def _reset(writer: asyncio.StreamWriter) -> None:
        """Close with RST, as a dropped network path or a crashed peer does."""
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        writer.close()
