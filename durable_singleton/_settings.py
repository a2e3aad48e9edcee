"""The one place that reads app settings.

Azure Functions hands app settings (and local.settings.json ``Values`` under
``func start``) to the worker as environment variables; the SingletonApp passes that
mapping in (``os.environ`` unless it was given another). Every setting the app reads
is named in this module and documented in docs/settings.md; ``infra/`` sets each of
them.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import List, Mapping, Optional, Type, TypeVar
from urllib.parse import urlsplit

from ._errors import NotStarted
from ._links import LinkMode
from ._policy import OnConflict, Overlap, Reuse

MAX_BODY_BYTES = "SINGLETON_MAX_BODY_BYTES"
DEFAULT_ON_CONFLICT = "SINGLETON_DEFAULT_ON_CONFLICT"
DEFAULT_REUSE = "SINGLETON_DEFAULT_REUSE"
TERMINATE_TIMEOUT_SECONDS = "SINGLETON_TERMINATE_TIMEOUT_SECONDS"
LOCK_WAIT_SECONDS = "SINGLETON_LOCK_WAIT_SECONDS"
LOCK_CONTAINER = "SINGLETON_LOCK_CONTAINER"
JOB_CONTAINER = "SINGLETON_JOB_CONTAINER"
STORAGE_TIMEOUT_SECONDS = "SINGLETON_STORAGE_TIMEOUT_SECONDS"
DURABLE_TIMEOUT_SECONDS = "SINGLETON_DURABLE_TIMEOUT_SECONDS"
MANAGEMENT_LINKS = "SINGLETON_MANAGEMENT_LINKS"
IDEMPOTENCY_TTL_SECONDS = "SINGLETON_IDEMPOTENCY_TTL_SECONDS"
NEXT_RUN_WAIT_SECONDS = "SINGLETON_NEXT_RUN_WAIT_SECONDS"
STUCK_PENDING_SECONDS = "SINGLETON_STUCK_PENDING_SECONDS"
QUEUE_BOUND = "SINGLETON_QUEUE_BOUND"
#: The retention timer's NCRONTAB schedule, read by the Functions host (%...%).
RETENTION_SCHEDULE = "SINGLETON_RETENTION_SCHEDULE"
#: The retention timer's own settings (read by its tick only, see load_retention).
RETENTION_ENABLED = "SINGLETON_RETENTION_ENABLED"
RETENTION_DAYS = "SINGLETON_RETENTION_DAYS"
RETENTION_PURGE_INSTANCES = "SINGLETON_RETENTION_PURGE_INSTANCES"
RETENTION_MAX_CALLS = "SINGLETON_RETENTION_MAX_CALLS"
RETENTION_MAX_SECONDS = "SINGLETON_RETENTION_MAX_SECONDS"

#: The longest a Durable API call may be given: a call made under the start lock must
#: end well inside the lock's 15 s lease (see :mod:`durable_singleton._lock`).
MAX_DURABLE_TIMEOUT_SECONDS = 10.0

#: The settings of the schedule in folder TimerStartSingle; another schedule's folder
#: passes a prefix of its own (docs/jobs.md, "Scheduled singletons (TimerStartSingle)").
DEFAULT_SCHEDULE_PREFIX = "SINGLETON_SCHEDULE"
#: Each schedule's settings: the prefix, then one of these.
SCHEDULE_SUFFIXES = (
    "",
    "_ENABLED",
    "_ORCHESTRATOR",
    "_INSTANCE_ID",
    "_INPUT",
    "_OVERLAP",
    "_REUSE",
)

#: Prefix of the storage connection, as the Functions host names it. The host keeps the
#: Durable task hub in this account; the lock blobs live beside it.
STORAGE_CONNECTION = "AzureWebJobsStorage"

#: Every setting above, for the test that checks infra/ sets them all.
APP_SETTINGS = (
    MAX_BODY_BYTES,
    DEFAULT_ON_CONFLICT,
    DEFAULT_REUSE,
    TERMINATE_TIMEOUT_SECONDS,
    LOCK_WAIT_SECONDS,
    LOCK_CONTAINER,
    JOB_CONTAINER,
    STORAGE_TIMEOUT_SECONDS,
    DURABLE_TIMEOUT_SECONDS,
    MANAGEMENT_LINKS,
    IDEMPOTENCY_TTL_SECONDS,
    NEXT_RUN_WAIT_SECONDS,
    STUCK_PENDING_SECONDS,
    QUEUE_BOUND,
    RETENTION_SCHEDULE,
    RETENTION_ENABLED,
    RETENTION_DAYS,
    RETENTION_PURGE_INSTANCES,
    RETENTION_MAX_CALLS,
    RETENTION_MAX_SECONDS,
    *(f"{DEFAULT_SCHEDULE_PREFIX}{suffix}" for suffix in SCHEDULE_SUFFIXES),
)


class ConfigurationError(NotStarted):
    """An app setting holds a value the app cannot use.

    The message names the setting and the rule; it never repeats the value, which
    may be a connection string.
    """


@dataclass(frozen=True)
class Settings:
    """The starter's tunables, each from an app setting with a default."""

    max_body_bytes: int = 1024 * 1024
    on_conflict: OnConflict = OnConflict.REJECT
    reuse: Reuse = Reuse.ALLOW_DUPLICATE
    terminate_timeout_seconds: float = 60.0
    lock_wait_seconds: float = 10.0
    lock_container: str = "singleton-locks"
    job_container: str = "singleton-jobs"
    storage_timeout_seconds: float = 5.0
    durable_timeout_seconds: float = 5.0
    management_links: LinkMode = LinkMode.DURABLE
    idempotency_ttl_seconds: float = 86400.0
    next_run_wait_seconds: float = 20.0
    stuck_pending_seconds: float = 600.0
    queue_bound: int = 100


@dataclass(frozen=True)
class StorageConnection:
    """How to reach the app's storage account for Blob Storage.

    Exactly one of ``connection_string`` and ``account_url`` is set. With an account
    URL the client authenticates with Microsoft Entra ID: a managed identity when
    ``credential`` is ``managedidentity`` (``client_id`` picks a user-assigned one),
    otherwise the default credential chain.
    """

    connection_string: Optional[str] = None
    account_url: Optional[str] = None
    credential: Optional[str] = None
    client_id: Optional[str] = None

    def __post_init__(self) -> None:
        """Refuse a connection that has both, or neither, of its two forms."""
        if (self.connection_string is None) == (self.account_url is None):
            raise ValueError("exactly one of connection_string and account_url")


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Read the starter's settings from ``environ`` (the SingletonApp's), with defaults
    for those not set; ConfigurationError for a value outside its range."""
    defaults = Settings()
    return Settings(
        max_body_bytes=_int(environ, MAX_BODY_BYTES, defaults.max_body_bytes, 1, 100 * 1024**2),
        on_conflict=_choice(environ, DEFAULT_ON_CONFLICT, OnConflict, defaults.on_conflict),
        reuse=_choice(environ, DEFAULT_REUSE, Reuse, defaults.reuse),
        terminate_timeout_seconds=_number(
            environ, TERMINATE_TIMEOUT_SECONDS, defaults.terminate_timeout_seconds, 1, 600
        ),
        lock_wait_seconds=_number(
            environ, LOCK_WAIT_SECONDS, defaults.lock_wait_seconds, 0.1, 120
        ),
        lock_container=_container_name(environ, LOCK_CONTAINER, defaults.lock_container),
        job_container=_container_name(environ, JOB_CONTAINER, defaults.job_container),
        storage_timeout_seconds=_number(
            environ, STORAGE_TIMEOUT_SECONDS, defaults.storage_timeout_seconds, 0.5, 10
        ),
        durable_timeout_seconds=_number(
            environ,
            DURABLE_TIMEOUT_SECONDS,
            defaults.durable_timeout_seconds,
            0.5,
            MAX_DURABLE_TIMEOUT_SECONDS,
        ),
        management_links=_choice(environ, MANAGEMENT_LINKS, LinkMode, defaults.management_links),
        idempotency_ttl_seconds=_number(
            environ, IDEMPOTENCY_TTL_SECONDS, defaults.idempotency_ttl_seconds, 1, 30 * 86400
        ),
        next_run_wait_seconds=_number(
            environ, NEXT_RUN_WAIT_SECONDS, defaults.next_run_wait_seconds, 1, 120
        ),
        stuck_pending_seconds=_int(
            environ, STUCK_PENDING_SECONDS, int(defaults.stuck_pending_seconds), 10, 30 * 86400
        ),
        queue_bound=_int(environ, QUEUE_BOUND, defaults.queue_bound, 1, 10_000),
    )


@dataclass(frozen=True)
class Schedule:
    """One scheduled singleton's settings, as written; the timer checks the orchestrator,
    the id and the input with the starter's own rules on every tick."""

    prefix: str
    enabled: bool
    orchestrator: str
    instance_id: str
    input_json: str
    overlap: Overlap
    reuse: Reuse


@dataclass(frozen=True)
class Retention:
    """The retention timer's settings (docs/operate.md, Retention)."""

    enabled: bool = False
    #: Finished instances older than this are purged; lock blobs idle this long deleted.
    days: int = 30
    #: False keeps every instance (reuse=rejectDuplicate then holds for good).
    purge_instances: bool = True
    #: Per tick: the most storage and Durable API calls, and the most seconds.
    max_calls: int = 2000
    max_seconds: float = 120.0


def load_retention(environ: Mapping[str, str]) -> Retention:
    """Read the retention timer's settings (its tick reads them; a wrong one stops the
    tick, not the starts).

    Raises ConfigurationError when a setting holds a value outside its rules.
    """
    defaults = Retention()
    return Retention(
        enabled=_flag(environ, RETENTION_ENABLED, defaults.enabled),
        days=_int(environ, RETENTION_DAYS, defaults.days, 1, 3650),
        purge_instances=_flag(environ, RETENTION_PURGE_INSTANCES, defaults.purge_instances),
        max_calls=_int(environ, RETENTION_MAX_CALLS, defaults.max_calls, 10, 100_000),
        max_seconds=_number(environ, RETENTION_MAX_SECONDS, defaults.max_seconds, 5, 600),
    )


def load_schedule(prefix: str, environ: Mapping[str, str]) -> Schedule:
    """Read the settings of the schedule whose settings start with ``prefix``.

    ``<prefix>`` itself is the NCRONTAB expression, read by the Functions host through
    the timer's function.json (``%<prefix>%``); this reads the rest.

    Raises ConfigurationError when a setting is missing or holds a value outside its
    rules.
    """
    instance_id = _raw(environ, f"{prefix}_INSTANCE_ID")
    if instance_id is None:
        raise ConfigurationError(f"App setting {prefix}_INSTANCE_ID is not set.")
    return Schedule(
        prefix=prefix,
        enabled=_flag(environ, f"{prefix}_ENABLED", False),
        orchestrator=_raw(environ, f"{prefix}_ORCHESTRATOR") or "SingletonOrchestrator",
        instance_id=instance_id,
        input_json=environ.get(f"{prefix}_INPUT", "").strip(),
        overlap=_choice(environ, f"{prefix}_OVERLAP", Overlap, Overlap.SKIP),
        reuse=_choice(environ, f"{prefix}_REUSE", Reuse, Reuse.ALLOW_DUPLICATE),
    )


def load_storage_connection(environ: Mapping[str, str]) -> StorageConnection:
    """Read the storage connection the way the Functions host does.

    ``AzureWebJobsStorage`` holds a connection string; identity-based connections use
    ``AzureWebJobsStorage__blobServiceUri`` or ``AzureWebJobsStorage__accountName``,
    with ``__credential`` and ``__clientId`` for a managed identity.

    ``environ`` is where the settings live (the SingletonApp's ``environ``); returns
    the connection to build a Blob Storage client from, or raises ConfigurationError
    when none is configured.
    """
    prefix = STORAGE_CONNECTION
    connection_string = _raw(environ, prefix)
    if connection_string:
        return StorageConnection(connection_string=connection_string)
    service_uri = _raw(environ, f"{prefix}__blobServiceUri")
    account_name = _raw(environ, f"{prefix}__accountName")
    if service_uri and not is_service_url(service_uri):
        raise ConfigurationError(
            f"App setting {prefix}__blobServiceUri must be an http(s) URL with a host."
        )
    if not service_uri and account_name:
        # Storage account names: 3 to 24 lowercase letters and digits.
        if not re.fullmatch(r"[a-z0-9]{3,24}", account_name):
            raise ConfigurationError(
                f"App setting {prefix}__accountName must be a storage account name: "
                "3 to 24 lowercase letters and digits."
            )
        service_uri = f"https://{account_name}.blob.core.windows.net"
    if not service_uri:
        raise ConfigurationError(
            f"No storage connection: set {prefix} to a connection string, or "
            f"{prefix}__blobServiceUri or {prefix}__accountName for an identity-based "
            "connection."
        )
    credential = _raw(environ, f"{prefix}__credential")
    return StorageConnection(
        account_url=service_uri,
        credential=credential.lower() if credential else None,
        client_id=_raw(environ, f"{prefix}__clientId"),
    )


def is_service_url(url: str) -> bool:
    """Whether ``url`` is an absolute http(s) URL whose host has no empty label."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(host) and "" not in host.split(".")


def _raw(environ: Mapping[str, str], name: str) -> Optional[str]:
    value = environ.get(name, "").strip()
    return value or None


def _number(
    environ: Mapping[str, str], name: str, default: float, low: float, high: float
) -> float:
    raw = _raw(environ, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # also refuses NaN
        raise ConfigurationError(f"App setting {name} must be a number from {low} to {high}.")
    return value


def _int(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = _raw(environ, name)
    if raw is None:
        return default
    # str.isdigit() also accepts digits int() refuses, such as "²".
    if not re.fullmatch(r"[0-9]{1,12}", raw) or not low <= int(raw) <= high:
        raise ConfigurationError(
            f"App setting {name} must be a whole number from {low} to {high}."
        )
    return int(raw)


Choice = TypeVar("Choice", bound=enum.Enum)


def parse_choice(kind: Type[Choice], raw: str) -> Optional[Choice]:
    """Return the member of ``kind`` whose value is ``raw`` (case-sensitive), or None.

    The one reading of a choice: app settings and query parameters both use it.
    """
    return next((member for member in kind if member.value == raw), None)


def choice_values(kind: Type[enum.Enum]) -> List[str]:
    """The values a choice of ``kind`` may take, in declaration order."""
    return [member.value for member in kind]


def _choice(environ: Mapping[str, str], name: str, kind: Type[Choice], default: Choice) -> Choice:
    raw = _raw(environ, name)
    if raw is None:
        return default
    member = parse_choice(kind, raw)
    if member is None:
        allowed = ", ".join(choice_values(kind))
        raise ConfigurationError(f"App setting {name} must be one of: {allowed}.")
    return member


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _raw(environ, name)
    if raw is None:
        return default
    if raw.lower() not in ("true", "false"):
        raise ConfigurationError(f"App setting {name} must be true or false.")
    return raw.lower() == "true"


def _container_name(environ: Mapping[str, str], name: str, default: str) -> str:
    raw = _raw(environ, name)
    if raw is None:
        return default
    # Blob container rules: 3-63 lowercase letters, digits and single hyphens.
    if not (3 <= len(raw) <= 63 and re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", raw)):
        raise ConfigurationError(
            f"App setting {name} must be a blob container name: 3 to 63 "
            "lowercase letters, digits and single hyphens."
        )
    return raw
