"""The Blob Storage client for the app's storage account (one per composition root), on
the storage connection the Functions host uses."""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any, Dict, Mapping, Optional

from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.blob.aio import BlobServiceClient, LinearRetry

from ._settings import STORAGE_CONNECTION, ConfigurationError, StorageConnection, is_service_url

#: Fail fast when storage is unreachable: two quick retries, short timeouts. The SDK's
#: default (exponential from 15 s) would hold a caller for most of a minute before
#: the 503 it gets anyway.
_CLIENT_OPTIONS: Dict[str, Any] = {"connection_timeout": 5, "read_timeout": 10}

# The Azure SDK logs every request at INFO; under the Functions host that floods the
# app's logs with storage URLs, so only its warnings and errors are kept.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
logging.getLogger("azure.identity").setLevel(logging.WARNING)


#: The environment variables through which an HTTP proxy is configured (aiohttp reads
#: them, in either case).
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "WS_PROXY", "WSS_PROXY")


def uses_proxy(environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` configures an HTTP proxy: only then does the storage client read
    its environment per request (else the SDK looks for proxies and ``.netrc`` on every
    request, in a thread, a fifth of a lease call's CPU: docs/benchmark.md)."""
    return any(environ.get(name) or environ.get(name.lower()) for name in PROXY_VARIABLES)


def credential_for(connection: StorageConnection) -> Optional[Any]:
    """The Entra ID credential an identity-based ``connection`` asks for: None for a connection
    string; a ManagedIdentityCredential for ``managedidentity`` (user-assigned with a
    ``client_id``); otherwise a DefaultAzureCredential (which finds a developer's login)."""
    if connection.connection_string:
        return None
    if connection.credential == "managedidentity":
        if connection.client_id:
            return ManagedIdentityCredential(client_id=connection.client_id)
        return ManagedIdentityCredential()
    return DefaultAzureCredential(managed_identity_client_id=connection.client_id)


def blob_service_client(
    connection: StorageConnection, environ: Mapping[str, str] = {}, **options: Any
) -> BlobServiceClient:
    """An async Blob Storage client for ``connection``, with short timeouts and few
    retries. ``environ`` gives the proxy settings (:func:`uses_proxy`); ``options`` go to
    the SDK client (the benchmark adds a hook that counts requests). Raises
    ConfigurationError when the connection string cannot be read as one."""
    # Fractions of a second work at run time; the SDK's annotations say int.
    retry = LinearRetry(backoff=0.2, retry_total=2, random_jitter_range=0.1)  # type: ignore[arg-type]
    options = {"use_env_settings": uses_proxy(environ), **options}
    if connection.connection_string:
        check_connection(connection)
        try:
            client = BlobServiceClient.from_connection_string(
                connection.connection_string, retry_policy=retry, **_CLIENT_OPTIONS, **options
            )
        except ValueError:  # the SDK's message may quote the string: never repeat it
            raise _malformed(STORAGE_CONNECTION, "a valid storage connection string") from None
        if not is_service_url(client.url):  # e.g. an account name that makes no host
            raise _malformed(STORAGE_CONNECTION, "a valid storage connection string")
        return client
    assert connection.account_url is not None  # one of the two, checked when made
    return BlobServiceClient(
        connection.account_url,
        credential=credential_for(connection),
        retry_policy=retry,
        **_CLIENT_OPTIONS,
        **options,
    )


def check_connection(connection: StorageConnection) -> None:
    """Refuse a connection string the Storage SDK accepts but cannot use (an empty account
    name, an empty or non-base64 key, an endpoint that is not a URL); ConfigurationError
    naming the setting, never its value."""
    if not connection.connection_string:
        return  # an account URL, checked when it was read
    members: Dict[str, str] = {}
    for part in connection.connection_string.split(";"):
        name, _, member = part.partition("=")
        members[name.strip().lower()] = member.strip()
    if "accountname" in members and not members["accountname"]:
        raise _malformed(STORAGE_CONNECTION, "a connection string with an account name")
    if "accountkey" in members:
        try:
            key = base64.b64decode(members["accountkey"], validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if not key:
            raise _malformed(STORAGE_CONNECTION, "a connection string with a base64 account key")
    for endpoint in ("blobendpoint", "queueendpoint", "tableendpoint"):
        if endpoint in members and not is_service_url(members[endpoint]):
            raise _malformed(STORAGE_CONNECTION, "a connection string whose endpoints are URLs")


def _malformed(setting: str, expected: str) -> ConfigurationError:
    return ConfigurationError(f"App setting {setting} is not {expected}.")
