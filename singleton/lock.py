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
from typing import Optional

from azure.core.exceptions import (AzureError, HttpResponseError, ResourceExistsError,
                                   ResourceNotFoundError)
from azure.storage.blob.aio import BlobClient, BlobLeaseClient, ContainerClient

LEASE_SECONDS = 15
RENEW_EVERY_SECONDS = LEASE_SECONDS / 3

logger = logging.getLogger(__name__)


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

    async def try_acquire(self, task_hub: str, instance_id: str) -> Optional["HeldLock"]:
        """Take the lease for the id, or return None at once when someone else holds it.

        Raises
        ------
        LockUnavailable
            When storage cannot be reached or refuses the request.
        """
        blob = self._container.get_blob_client(lock_blob_name(task_hub, instance_id))
        try:
            try:
                lease = await blob.acquire_lease(lease_duration=self._lease_seconds)
            except ResourceNotFoundError as missing:
                # First use of this id (or of the container): create, then try once more.
                await self._create(blob, missing.error_code)
                lease = await blob.acquire_lease(lease_duration=self._lease_seconds)
        except HttpResponseError as error:
            if error.status_code == 409 and error.error_code == "LeaseAlreadyPresent":
                return None
            raise LockUnavailable(_describe(error)) from error
        except AzureError as error:
            raise LockUnavailable(_describe(error)) from error
        return HeldLock(lease, self._renew_every)

    async def _create(self, blob: BlobClient, error_code: Optional[str]) -> None:
        if error_code == "ContainerNotFound":
            with contextlib.suppress(ResourceExistsError):
                await self._container.create_container()
        # An empty blob; if another caller created it first, that one serves as well.
        with contextlib.suppress(ResourceExistsError):
            await blob.upload_blob(b"", overwrite=False)


class HeldLock:
    """A lease this caller holds, renewed in the background until released."""

    def __init__(self, lease: BlobLeaseClient, renew_every: float):
        """Start renewing ``lease`` every ``renew_every`` seconds."""
        self._lease = lease
        self._renewer = asyncio.create_task(self._keep_renewing(renew_every))

    async def release(self) -> None:
        """Stop renewing and release the lease.

        Never raises: if the release cannot reach storage, the lease simply expires
        within its 15 s, and the answer the caller gets must not depend on it.
        """
        self._renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._renewer
        try:
            await self._lease.release()
        except AzureError as error:
            logger.warning("Start lock release failed (%s); it expires on its own.",
                           type(error).__name__)

    async def _keep_renewing(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self._lease.renew()
            except AzureError as error:
                logger.warning("Start lock renewal failed (%s).", type(error).__name__)
                return


def _describe(error: AzureError) -> str:
    # The error code or class only: messages can hold URLs, never needed in a log.
    code = getattr(error, "error_code", None)
    return f"{type(error).__name__}{f' ({code})' if code else ''}"
