"""The lease around check-and-start: one blob lease per task hub and instance id.

A blob lease is a mutex that every app instance shares through the storage account,
so it holds across processes and scaled-out hosts, not only inside one worker.

Lease length: 15 s, the shortest fixed lease Blob Storage grants (15 to 60 s, or
infinite). While held, the lease is renewed every 5 s, so a long hold (replacing an
instance, which may wait a minute for termination) keeps it; a holder that dies stops
renewing and loses it at most 15 s after its last renewal, never later. An infinite
lease would outlive a crashed holder forever.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Callable, Dict, Optional, Set

from azure.core.exceptions import (AzureError, HttpResponseError, ResourceExistsError,
                                   ResourceNotFoundError)
from azure.storage.blob.aio import BlobClient, BlobLeaseClient, ContainerClient

LEASE_SECONDS = 15
RENEW_EVERY_SECONDS = LEASE_SECONDS / 3

logger = logging.getLogger(__name__)

#: Releases running in the background; held here because asyncio keeps only weak
#: references to tasks.
_releasing: Set["asyncio.Task[None]"] = set()

#: Locks this process is taking or holds, by container and blob name. A burst of
#: requests for one id in one worker makes one storage attempt; the others wait for
#: this event instead of each sending their own doomed lease requests.
_local: Dict[str, asyncio.Event] = {}


class LockUnavailable(Exception):
    """The storage account that holds the locks could not be used."""


def lock_blob_name(task_hub: str, instance_id: str) -> str:
    """Name the lock blob of ``instance_id`` in ``task_hub``.

    Instance ids are unique per task hub, not per function, so the function name is
    not part of the name: two function names must not both win one id. Task hub names
    are case-insensitive in Azure Storage, so the hub is lowercased; instance ids are
    case-sensitive and kept as they are (validation allows only URL-safe characters).
    """
    return f"{task_hub.lower()}/{instance_id}"


class StartLocks:
    """Hands out the lease on an instance id's lock blob."""

    def __init__(self, container: ContainerClient, lease_seconds: int = LEASE_SECONDS,
                 renew_every: float = RENEW_EVERY_SECONDS):
        """Keep locks as blobs in ``container``, created on first use."""
        self._container = container
        self._lease_seconds = lease_seconds
        self._renew_every = renew_every

    async def try_acquire(self, task_hub: str, instance_id: str,
                          first_use: bool = False) -> Optional["HeldLock"]:
        """Take the lease for the id, or return None at once when someone else holds it.

        Parameters
        ----------
        task_hub : str
            The Durable task hub the instance lives in.
        instance_id : str
            The instance id to lock.
        first_use : bool
            The caller expects the id to be new (no instance has it), so its lock blob
            probably does not exist yet: create it before the first attempt instead
            of after a failed one. Either way the outcome is the same.

        Raises
        ------
        LockUnavailable
            When storage cannot be reached or refuses the request.
        """
        name = lock_blob_name(task_hub, instance_id)
        key = self._local_key(name)
        if key in _local:
            return None  # taken (or being taken) in this process: no storage call needed
        done = _local[key] = asyncio.Event()

        def finished() -> None:
            if _local.get(key) is done:  # not a later caller's registration
                del _local[key]
            done.set()

        try:
            lease = await self._acquire(self._container.get_blob_client(name), first_use)
        except BaseException:
            finished()
            raise
        if lease is None:
            finished()
            return None
        return HeldLock(lease, self._renew_every, finished)

    async def wait_for_local_holder(self, task_hub: str, instance_id: str,
                                    timeout: float) -> bool:
        """Wait, at most ``timeout`` seconds, until this process's holder of the id's
        lock is done with it.

        Returns False at once when no caller in this process has the lock (it is held
        elsewhere, or free), so the caller knows to poll instead.
        """
        event = _local.get(self._local_key(lock_blob_name(task_hub, instance_id)))
        if event is None:
            return False
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        return True

    def _local_key(self, blob_name: str) -> str:
        """The lock's key in this process: container and blob, as storage names it."""
        return f"{self._container.container_name}/{blob_name}"

    async def _acquire(self, blob: BlobClient, first_use: bool) -> Optional[BlobLeaseClient]:
        try:
            if first_use:
                await self._create(blob)
            try:
                return await blob.acquire_lease(lease_duration=self._lease_seconds)
            except ResourceNotFoundError:
                # First use of this id (or of the container): create, then try once more.
                await self._create(blob)
                return await blob.acquire_lease(lease_duration=self._lease_seconds)
        except HttpResponseError as error:
            if error.status_code == 409 and error.error_code == "LeaseAlreadyPresent":
                return None
            raise LockUnavailable(_describe(error)) from error
        except AzureError as error:
            raise LockUnavailable(_describe(error)) from error

    async def _create(self, blob: BlobClient) -> None:
        """Create the empty lock blob (and its container) unless it exists.

        "Already exists" is success: another caller's blob serves as well, and an
        existing blob answers so even while leased.
        """
        try:
            with contextlib.suppress(ResourceExistsError):
                await blob.upload_blob(b"", overwrite=False)
        except ResourceNotFoundError:  # the container is missing: first use of the app
            with contextlib.suppress(ResourceExistsError):
                await self._container.create_container()
            with contextlib.suppress(ResourceExistsError):
                await blob.upload_blob(b"", overwrite=False)


class HeldLock:
    """A lease this caller holds, renewed in the background until released."""

    def __init__(self, lease: BlobLeaseClient, renew_every: float,
                 on_done: Callable[[], None] = lambda: None):
        """Start renewing ``lease`` every ``renew_every`` seconds.

        ``on_done`` runs as soon as the holder lets go, before the release reaches
        storage: it wakes the callers in this process that wait for the lock.
        """
        self._lease = lease
        self._on_done = on_done
        self._renewer = asyncio.create_task(self._keep_renewing(renew_every))

    async def release(self) -> None:
        """Stop renewing and release the lease.

        Never raises: if the release cannot reach storage, the lease simply expires
        within its 15 s, and the answer the caller gets must not depend on it.
        """
        self._let_go()
        self._renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._renewer
        try:
            await self._lease.release()
        except Exception as error:  # any failure: the lease expires on its own anyway
            logger.warning("Start lock release failed (%s); it expires on its own.",
                           type(error).__name__)

    def release_in_background(self) -> None:
        """Release without making the caller wait; see :func:`wait_for_releases`."""
        self._let_go()
        task = asyncio.create_task(self.release())
        _releasing.add(task)
        task.add_done_callback(_releasing.discard)

    def _let_go(self) -> None:
        on_done, self._on_done = self._on_done, lambda: None
        on_done()

    async def _keep_renewing(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self._lease.renew()
            except Exception as error:  # stop renewing; the lease then expires on its own
                logger.warning("Start lock renewal failed (%s).", type(error).__name__)
                return


async def wait_for_releases() -> None:
    """Wait until the releases handed to the background are done (shutdown, tests)."""
    while _releasing:
        await asyncio.gather(*list(_releasing))


def _describe(error: AzureError) -> str:
    # The error code or class only: messages can hold URLs, never needed in a log.
    code = getattr(error, "error_code", None)
    return f"{type(error).__name__}{f' ({code})' if code else ''}"
