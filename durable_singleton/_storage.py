"""Blob Storage clients for the app's storage account, built once and shared.

The client follows the storage connection the Functions host uses (see
:func:`durable_singleton._settings.load_storage_connection`): a connection string (Azurite
locally), or an account URL with a Microsoft Entra ID credential.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, Optional, Tuple

from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.blob.aio import BlobServiceClient, ContainerClient, LinearRetry

from ._lock import StartLocks
from ._settings import STORAGE_CONNECTION, ConfigurationError, StorageConnection

#: Fail fast when storage is unreachable: two quick retries, short timeouts. The SDK's
#: default (exponential from 15 s) would hold a caller for most of a minute before
#: the 503 it gets anyway.
_CLIENT_OPTIONS: Dict[str, Any] = {"connection_timeout": 5, "read_timeout": 10}

# The Azure SDK logs every request at INFO; under the Functions host that floods the
# app's logs with storage URLs, so only its warnings and errors are kept.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
logging.getLogger("azure.identity").setLevel(logging.WARNING)

_shared: Dict[StorageConnection, Tuple[asyncio.AbstractEventLoop, BlobServiceClient]] = {}
_LocksKey = Tuple[StorageConnection, str, float]
_locks: Dict[_LocksKey, Tuple[asyncio.AbstractEventLoop, StartLocks]] = {}


def credential_for(connection: StorageConnection) -> Optional[Any]:
    """Return the Entra ID credential an identity-based ``connection`` asks for.

    None for a connection string (it carries its key). A ManagedIdentityCredential
    when the setting's ``credential`` is ``managedidentity`` (user-assigned when it
    names a ``client_id``); otherwise a DefaultAzureCredential, which also finds a
    developer's login locally.
    """
    if connection.connection_string:
        return None
    if connection.credential == "managedidentity":
        if connection.client_id:
            return ManagedIdentityCredential(client_id=connection.client_id)
        return ManagedIdentityCredential()
    return DefaultAzureCredential(managed_identity_client_id=connection.client_id)


def blob_service_client(connection: StorageConnection, **options: Any) -> BlobServiceClient:
    """Build an async Blob Storage client for ``connection``.

    Parameters
    ----------
    connection : StorageConnection
        The storage connection from the app settings.
    **options : Any
        More keyword arguments for the SDK client (the benchmark adds a hook that
        counts requests).

    Returns
    -------
    BlobServiceClient
        A client with short timeouts and few retries.

    Raises
    ------
    ConfigurationError
        When the connection string cannot be read as one.
    """
    # Fractions of a second work at run time; the SDK's annotations say int.
    retry = LinearRetry(backoff=0.2, retry_total=2, random_jitter_range=0.1)  # type: ignore[arg-type]
    if connection.connection_string:
        try:
            return BlobServiceClient.from_connection_string(
                connection.connection_string, retry_policy=retry, **_CLIENT_OPTIONS, **options
            )
        except ValueError:  # the SDK's message may quote the string: never repeat it
            raise ConfigurationError(
                f"App setting {STORAGE_CONNECTION} is not a valid storage connection string."
            ) from None
    assert connection.account_url is not None  # one of the two, checked when made
    return BlobServiceClient(
        connection.account_url,
        credential=credential_for(connection),
        retry_policy=retry,
        **_CLIENT_OPTIONS,
        **options,
    )


def shared_container(connection: StorageConnection, name: str) -> ContainerClient:
    """Return a client for container ``name`` on the account's shared service client.

    The service client is built once per connection and event loop; reusing it keeps
    its connection pool (and token cache) across invocations. Its HTTP session belongs
    to the event loop that first used it, so a new loop (a new worker, or a test's
    loop) gets a new client. Container clients share the service client's pipeline
    and cost no I/O to make.

    Parameters
    ----------
    connection : StorageConnection
        The storage connection from the app settings.
    name : str
        The container name.

    Returns
    -------
    ContainerClient
        A client for the container.
    """
    loop = asyncio.get_running_loop()
    cached = _shared.get(connection)
    if cached is None or cached[0] is not loop:
        cached = (loop, blob_service_client(connection))
        _shared[connection] = cached
    return cached[1].get_container_client(name)


def shared_locks(
    connection: StorageConnection, container: str, storage_timeout: float
) -> StartLocks:
    """Return this process's :class:`StartLocks` for the lock container ``container``.

    One per connection, container, time limit and event loop, so that every request
    in the process shares what it knows about the locks being taken.
    """
    loop = asyncio.get_running_loop()
    key = (connection, container, storage_timeout)
    cached = _locks.get(key)
    if cached is None or cached[0] is not loop:
        cached = (loop, StartLocks(shared_container(connection, container), storage_timeout))
        _locks[key] = cached
    return cached[1]


async def wait_for_releases() -> None:
    """Wait until the lock releases of the running loop's requests are done."""
    loop = asyncio.get_running_loop()
    for owner, locks in list(_locks.values()):
        if owner is loop:
            await locks.close()


async def close_shared() -> None:
    """Finish the lock releases in the background, then close the shared clients of
    the running event loop (at shutdown, in tests)."""
    await wait_for_releases()
    loop = asyncio.get_running_loop()
    for key, (owner, _) in list(_locks.items()):
        if owner is loop:
            del _locks[key]
    for connection, (owner, client) in list(_shared.items()):
        if owner is loop:
            del _shared[connection]
            await client.close()
