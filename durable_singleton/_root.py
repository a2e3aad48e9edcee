"""The composition root: everything one event loop's requests share, made once.

A :class:`Root` owns the settings (read and checked once, when it is made), the HTTP session
to the Durable API, and, made on first use, the Blob Storage client and the start locks of
one event loop (an aiohttp session and the storage SDK's transport belong to the loop that
made them). :class:`durable_singleton.SingletonApp` makes it on first use and closes it."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Mapping, Optional

import aiohttp
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from ._catalog import Catalog
from ._durable import Binding, DurableClient, new_session
from ._lock import LeaseStore, StartLocks
from ._next_run_store import NextRunStore
from ._settings import Settings, StorageConnection, load_settings, load_storage_connection
from ._slots import QueueStore, queue_store
from ._storage import blob_service_client, check_connection


class Root:
    """One event loop's settings, sessions, clients and locks."""

    def __init__(
        self,
        environ: Mapping[str, str],
        catalog: Catalog,
        blob_options: Optional[Mapping[str, Any]] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Read the settings from ``environ`` now (ConfigurationError when one is wrong);
        ``catalog`` names the startable orchestrators; ``blob_options`` go to the Blob
        Storage client (a request hook, for example); ``clock`` is the monotonic clock
        the start locks reckon their leases on."""
        self.environ = environ
        self._clock = clock
        self.catalog = catalog
        self.settings: Settings = load_settings(environ)
        # Read and checked now, like every setting, so that a malformed one is answered
        # before any call; the client itself is made on first use.
        self.storage: StorageConnection = load_storage_connection(environ)
        check_connection(self.storage)
        self.loop = asyncio.get_running_loop()
        self._blob_options = dict(blob_options or {})
        self._session: Optional[aiohttp.ClientSession] = None
        self._blob_service: Optional[BlobServiceClient] = None
        self._locks: Optional[StartLocks] = None
        self._next_runs: Optional[NextRunStore] = None
        self._queues: Optional[QueueStore] = None

    def durable(self, binding: str) -> DurableClient:
        """The Durable API client for an invocation's ``durableClient`` binding JSON."""
        if self._session is None or self._session.closed:
            self._session = new_session()
        settings = self.settings
        return DurableClient(
            Binding.parse(binding),
            self._session,
            settings.durable_timeout_seconds,
            stuck_after=settings.stuck_pending_seconds,
        )

    def container(self, name: str) -> ContainerClient:
        """A client for container ``name`` on the root's one Blob Storage client."""
        if self._blob_service is None:
            self._blob_service = blob_service_client(
                self.storage, self.environ, **self._blob_options
            )
        return self._blob_service.get_container_client(name)

    def locks(self) -> StartLocks:
        """The start locks, in the lock container of the settings."""
        if self._locks is None:
            store = LeaseStore(
                self.container(self.settings.lock_container),
                self.settings.storage_timeout_seconds,
                clock=self._clock,
            )
            self._locks = StartLocks(store)
        return self._locks

    def queues(self) -> QueueStore:
        """The queues of the keys with a limit, beside the locks in the lock container."""
        if self._queues is None:
            self._queues = queue_store(
                self.container(self.settings.lock_container),
                self.settings.storage_timeout_seconds,
            )
        return self._queues

    def next_runs(self) -> NextRunStore:
        """The next-run channels, beside the locks in the lock container (one store, so
        that changes of one id made at once are written together)."""
        if self._next_runs is None:
            self._next_runs = NextRunStore(
                self.container(self.settings.lock_container),
                self.settings.storage_timeout_seconds,
            )
        return self._next_runs

    async def wait_for_background(self) -> None:
        """Wait until the lock releases handed to the background are done."""
        if self._locks is not None:
            await self._locks.close()

    async def close(self) -> None:
        """Finish the background releases, then close the session and the client."""
        await self.wait_for_background()
        session, blobs = self._session, self._blob_service
        self._session, self._blob_service, self._locks = None, None, None
        self._next_runs = None
        if session is not None:
            await session.close()
        if blobs is not None:
            await blobs.close()
