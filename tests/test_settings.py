"""App settings and the storage connection, as Azure Functions users configure them."""

from __future__ import annotations

import pytest
from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

from durable_singleton._policy import OnConflict, Reuse
from durable_singleton._settings import (
    ConfigurationError,
    Settings,
    StorageConnection,
    load_settings,
    load_storage_connection,
)
from durable_singleton._storage import blob_service_client, credential_for


def test_defaults() -> None:
    assert load_settings({}) == Settings(
        max_body_bytes=1048576,
        on_conflict=OnConflict.REJECT,
        reuse=Reuse.ALLOW_DUPLICATE,
        terminate_timeout_seconds=60.0,
        lock_wait_seconds=10.0,
        lock_container="singleton-locks",
        job_container="singleton-jobs",
        storage_timeout_seconds=5.0,
        durable_timeout_seconds=5.0,
    )


@pytest.mark.parametrize("value", ["garbage", "AccountName=x;AccountKey", ";;;", "a=b=c"])
def test_a_malformed_connection_string_names_the_setting_not_the_value(value: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        blob_service_client(load_storage_connection({"AzureWebJobsStorage": value}))
    assert "AzureWebJobsStorage" in str(raised.value)
    assert value not in str(raised.value)


def test_every_setting_is_read() -> None:
    assert load_settings(
        {
            "SINGLETON_MAX_BODY_BYTES": "2048",
            "SINGLETON_DEFAULT_ON_CONFLICT": "useExisting",
            "SINGLETON_DEFAULT_REUSE": "allowDuplicateFailedOnly",
            "SINGLETON_TERMINATE_TIMEOUT_SECONDS": "15",
            "SINGLETON_LOCK_WAIT_SECONDS": "2.5",
            "SINGLETON_LOCK_CONTAINER": "my-locks-2",
            "SINGLETON_STORAGE_TIMEOUT_SECONDS": "2",
            "SINGLETON_DURABLE_TIMEOUT_SECONDS": "7.5",
            "SINGLETON_NEXT_RUN_WAIT_SECONDS": "45",
        }
    ) == Settings(
        2048,
        OnConflict.USE_EXISTING,
        Reuse.ALLOW_DUPLICATE_FAILED_ONLY,
        15.0,
        2.5,
        "my-locks-2",
        "singleton-jobs",
        2.0,
        7.5,
        next_run_wait_seconds=45.0,
    )


@pytest.mark.parametrize(
    "name,value",
    [
        ("SINGLETON_MAX_BODY_BYTES", "0"),
        ("SINGLETON_MAX_BODY_BYTES", "-5"),
        ("SINGLETON_MAX_BODY_BYTES", "1e6"),
        ("SINGLETON_DEFAULT_ON_CONFLICT", "Reject"),
        ("SINGLETON_DEFAULT_REUSE", "never"),
        ("SINGLETON_TERMINATE_TIMEOUT_SECONDS", "nan"),
        ("SINGLETON_TERMINATE_TIMEOUT_SECONDS", "9999"),
        ("SINGLETON_LOCK_WAIT_SECONDS", "soon"),
        ("SINGLETON_LOCK_CONTAINER", "Locks"),
        ("SINGLETON_LOCK_CONTAINER", "a--b"),
        ("SINGLETON_LOCK_CONTAINER", "ab"),
        ("SINGLETON_MAX_BODY_BYTES", "\u00b2"),  # a digit to str.isdigit, not to int()
        ("SINGLETON_MAX_BODY_BYTES", "\u0661\u0662"),  # Arabic-Indic digits
        ("SINGLETON_STORAGE_TIMEOUT_SECONDS", "0"),
        ("SINGLETON_STORAGE_TIMEOUT_SECONDS", "60"),
        ("SINGLETON_DURABLE_TIMEOUT_SECONDS", "11"),  # must end well inside the 15 s lease
        ("SINGLETON_DURABLE_TIMEOUT_SECONDS", "inf"),
        ("SINGLETON_NEXT_RUN_WAIT_SECONDS", "0"),
        ("SINGLETON_NEXT_RUN_WAIT_SECONDS", "121"),
    ],
)
def test_bad_values_name_the_setting_not_the_value(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings({name: value})
    assert name in str(raised.value)
    assert f"'{value}'" not in str(raised.value)


def test_connection_string_wins() -> None:
    connection = load_storage_connection(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "AzureWebJobsStorage__accountName": "ignored",
        }
    )
    assert connection == StorageConnection(connection_string="UseDevelopmentStorage=true")
    assert credential_for(connection) is None
    client = blob_service_client(connection)
    assert client.url == "http://127.0.0.1:10000/devstoreaccount1/"


def test_account_name_with_user_assigned_managed_identity() -> None:
    connection = load_storage_connection(
        {
            "AzureWebJobsStorage__accountName": "stsingleton",
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
        }
    )
    assert connection == StorageConnection(
        account_url="https://stsingleton.blob.core.windows.net",
        credential="managedidentity",
        client_id="00000000-0000-0000-0000-000000000001",
    )
    credential = credential_for(connection)
    assert isinstance(credential, ManagedIdentityCredential)
    client = blob_service_client(connection)
    assert client.url == "https://stsingleton.blob.core.windows.net/"
    assert isinstance(client.credential, ManagedIdentityCredential)


def test_blob_service_uri_with_system_assigned_identity() -> None:
    connection = load_storage_connection(
        {
            "AzureWebJobsStorage__blobServiceUri": "https://example.blob.core.windows.net",
            "AzureWebJobsStorage__credential": "ManagedIdentity",
        }
    )
    assert connection.account_url == "https://example.blob.core.windows.net"
    assert connection.client_id is None
    assert isinstance(credential_for(connection), ManagedIdentityCredential)


def test_identity_without_managed_identity_uses_the_default_chain() -> None:
    connection = load_storage_connection({"AzureWebJobsStorage__accountName": "dev"})
    assert isinstance(credential_for(connection), DefaultAzureCredential)


def test_no_storage_connection_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_storage_connection({})
    assert "AzureWebJobsStorage" in str(raised.value)


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({}, False),
        ({"PATH": "/usr/bin", "NO_PROXY": "localhost"}, False),
        ({"HTTPS_PROXY": "http://proxy:3128"}, True),
        ({"http_proxy": "http://proxy:3128"}, True),
        ({"ALL_PROXY": ""}, False),
    ],
)
def test_the_storage_client_reads_its_environment_only_for_a_proxy(environ, expected) -> None:
    from durable_singleton._storage import uses_proxy

    assert uses_proxy(environ) is expected
