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
from dataclasses import dataclass, field, fields
from typing import Any, Callable, List, Mapping, Optional, Type, TypeVar
from urllib.parse import urlsplit

from ._errors import NotStarted
from ._links import LinkMode
from ._policy import OnConflict, Overlap, Reuse

#: The retention timer's NCRONTAB schedule, read by the Functions host (%...%).
RETENTION_SCHEDULE = "SINGLETON_RETENTION_SCHEDULE"

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


class ConfigurationError(NotStarted):
    """An app setting holds a value the app cannot use; the message names the setting and
    the rule, never the value (it may be a connection string)."""


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
    """The member of ``kind`` whose value is ``raw`` (case-sensitive), or None: the one
    reading of a choice, for app settings and query parameters alike."""
    return next((member for member in kind if member.value == raw), None)


def choice_values(kind: Type[enum.Enum]) -> List[str]:
    """The values a choice of ``kind`` may take, in declaration order."""
    return [member.value for member in kind]


def _choice(environ: Mapping[str, str], name: str, default: Choice) -> Choice:
    raw = _raw(environ, name)
    if raw is None:
        return default
    member = parse_choice(type(default), raw)
    if member is None:
        allowed = ", ".join(choice_values(type(default)))
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


def _setting(name: str, default: Any, read: Callable[..., Any], *rule: Any) -> Any:
    """A field read from app setting ``name`` by ``read(environ, name, default, *rule)``:
    each setting's name, default and rule in one place."""
    return field(default=default, metadata={"setting": (name, read, rule)})


Loaded = TypeVar("Loaded")


def _load(kind: Type[Loaded], environ: Mapping[str, str]) -> Loaded:
    """``kind`` (Settings or Retention) with each field read from its app setting."""
    values = {}
    for each in fields(kind):  # type: ignore[arg-type]
        name, read, rule = each.metadata["setting"]
        values[each.name] = read(environ, name, each.default, *rule)
    return kind(**values)


def _names(kind: type) -> List[str]:
    return [each.metadata["setting"][0] for each in fields(kind)]


@dataclass(frozen=True)
class Settings:
    """The starter's tunables, each from an app setting with a default."""

    max_body_bytes: int = _setting("SINGLETON_MAX_BODY_BYTES", 1024 * 1024, _int, 1, 100 * 1024**2)
    on_conflict: OnConflict = _setting("SINGLETON_DEFAULT_ON_CONFLICT", OnConflict.REJECT, _choice)
    reuse: Reuse = _setting("SINGLETON_DEFAULT_REUSE", Reuse.ALLOW_DUPLICATE, _choice)
    terminate_timeout_seconds: float = _setting(
        "SINGLETON_TERMINATE_TIMEOUT_SECONDS", 60.0, _number, 1, 600
    )
    lock_wait_seconds: float = _setting("SINGLETON_LOCK_WAIT_SECONDS", 10.0, _number, 0.1, 120)
    lock_container: str = _setting("SINGLETON_LOCK_CONTAINER", "singleton-locks", _container_name)
    job_container: str = _setting("SINGLETON_JOB_CONTAINER", "singleton-jobs", _container_name)
    storage_timeout_seconds: float = _setting(
        "SINGLETON_STORAGE_TIMEOUT_SECONDS", 5.0, _number, 0.5, 10
    )
    durable_timeout_seconds: float = _setting(
        "SINGLETON_DURABLE_TIMEOUT_SECONDS", 5.0, _number, 0.5, MAX_DURABLE_TIMEOUT_SECONDS
    )
    management_links: LinkMode = _setting("SINGLETON_MANAGEMENT_LINKS", LinkMode.DURABLE, _choice)
    idempotency_ttl_seconds: float = _setting(
        "SINGLETON_IDEMPOTENCY_TTL_SECONDS", 86400.0, _number, 1, 30 * 86400
    )
    next_run_wait_seconds: float = _setting(
        "SINGLETON_NEXT_RUN_WAIT_SECONDS", 20.0, _number, 1, 120
    )
    stuck_pending_seconds: float = _setting(
        "SINGLETON_STUCK_PENDING_SECONDS", 600, _int, 10, 30 * 86400
    )
    queue_bound: int = _setting("SINGLETON_QUEUE_BOUND", 100, _int, 1, 10_000)


@dataclass(frozen=True)
class Retention:
    """The retention timer's settings (docs/operate.md, Retention)."""

    enabled: bool = _setting("SINGLETON_RETENTION_ENABLED", False, _flag)
    #: Finished instances older than this are purged; lock blobs idle this long deleted.
    days: int = _setting("SINGLETON_RETENTION_DAYS", 30, _int, 1, 3650)
    #: False keeps every instance (reuse=rejectDuplicate then holds for good).
    purge_instances: bool = _setting("SINGLETON_RETENTION_PURGE_INSTANCES", True, _flag)
    #: Per tick: the most storage and Durable API calls, and the most seconds.
    max_calls: int = _setting("SINGLETON_RETENTION_MAX_CALLS", 2000, _int, 10, 100_000)
    max_seconds: float = _setting("SINGLETON_RETENTION_MAX_SECONDS", 120.0, _number, 5, 600)


#: Every setting the app reads, for the test that checks infra/ sets them all.
APP_SETTINGS = (
    *_names(Settings),
    *_names(Retention),
    RETENTION_SCHEDULE,
    *(f"{DEFAULT_SCHEDULE_PREFIX}{suffix}" for suffix in SCHEDULE_SUFFIXES),
)


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Read the starter's settings from ``environ`` (the SingletonApp's), with defaults
    for those not set; ConfigurationError for a value outside its range."""
    return _load(Settings, environ)


def load_retention(environ: Mapping[str, str]) -> Retention:
    """Read the retention timer's settings (its tick reads them: a wrong one stops the tick,
    not the starts); ConfigurationError for a value outside its rules."""
    return _load(Retention, environ)


@dataclass(frozen=True)
class StorageConnection:
    """How to reach the app's storage account: exactly one of ``connection_string`` and
    ``account_url``; with a URL, Microsoft Entra ID (a managed identity when ``credential`` is
    ``managedidentity``, user-assigned with ``client_id``; else the default chain)."""

    connection_string: Optional[str] = None
    account_url: Optional[str] = None
    credential: Optional[str] = None
    client_id: Optional[str] = None

    def __post_init__(self) -> None:
        """Refuse a connection that has both, or neither, of its two forms."""
        if (self.connection_string is None) == (self.account_url is None):
            raise ValueError("exactly one of connection_string and account_url")


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


def load_schedule(prefix: str, environ: Mapping[str, str]) -> Schedule:
    """Read the settings of the schedule whose settings start with ``prefix`` (``<prefix>``
    itself, the NCRONTAB expression, is the host's); ConfigurationError for one missing or
    outside its rules."""
    instance_id = _raw(environ, f"{prefix}_INSTANCE_ID")
    if instance_id is None:
        raise ConfigurationError(f"App setting {prefix}_INSTANCE_ID is not set.")
    return Schedule(
        prefix=prefix,
        enabled=_flag(environ, f"{prefix}_ENABLED", False),
        orchestrator=_raw(environ, f"{prefix}_ORCHESTRATOR") or "SingletonOrchestrator",
        instance_id=instance_id,
        input_json=environ.get(f"{prefix}_INPUT", "").strip(),
        overlap=_choice(environ, f"{prefix}_OVERLAP", Overlap.SKIP),
        reuse=_choice(environ, f"{prefix}_REUSE", Reuse.ALLOW_DUPLICATE),
    )


def load_storage_connection(environ: Mapping[str, str]) -> StorageConnection:
    """Read the storage connection the way the Functions host does: ``AzureWebJobsStorage``
    holds a connection string; identity-based connections use its ``__blobServiceUri`` or
    ``__accountName``, with ``__credential`` and ``__clientId`` for a managed identity.
    ConfigurationError when none is configured."""
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
