"""Retries that get the same answer: the ``Idempotency-Key`` header. docs/design.md,
"Idempotency keys" gives the rule; :func:`judge` is the whole of it, pure."""

from __future__ import annotations

import datetime
import enum
import hashlib
import json
import re
from dataclasses import dataclass, replace
from typing import Any, Dict, Mapping, Optional, Tuple

from ._durable import InstanceStatus

#: The request header, and the header on an answer given again.
HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
#: Printable ASCII, space to tilde.
_KEY = re.compile(r"[\x20-\x7e]{1,%d}" % MAX_KEY_LENGTH)
KEY_RULE = f"An Idempotency-Key is 1 to {MAX_KEY_LENGTH} printable ASCII characters, given once."

#: Metadata names on the lock blob (letters only: metadata names are C# identifiers).
_FIELDS = ("idemkey", "idemfingerprint", "idemto", "idembefore", "idemexpires", "idemlanded")
_SUPERSEDED = "idemsuperseded"
#: Only when the key's start dropped a next run (a replace's): the request dropped.
_DROPPED = "idemdropped"
#: Superseded keys remembered per id (the oldest forgotten first); each costs 44 bytes of
#: the lock blob's metadata (Blob Storage allows 8 KiB).
MAX_SUPERSEDED = 64
#: A superseded key is remembered by this many hex digits of its digest (128 bits).
_SUPERSEDED_DIGITS = 32


@dataclass(frozen=True)
class KeyedRequest:
    """A start request's key (as its SHA-256 digest) and the request's fingerprint."""

    key_digest: str
    fingerprint: str


def keyed(key: str, parts: Mapping[str, Any], body: bytes) -> KeyedRequest:
    """The digests of ``key`` and of the request: ``parts`` (orchestrator, id, effective
    policies) and the body's bytes. Neither the key nor the body is kept."""
    described = json.dumps(dict(parts), sort_keys=True).encode("utf-8")
    fingerprint = hashlib.sha256(described + b"\n" + hashlib.sha256(body).digest())
    return KeyedRequest(_digest(key.encode("ascii")), fingerprint.hexdigest())


def valid_key(value: str) -> bool:
    """Whether ``value`` is an Idempotency-Key this app accepts."""
    return bool(_KEY.fullmatch(value))


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Record:
    """The key whose start is the id's latest start through this app."""

    key_digest: str
    fingerprint: str
    #: Until when its start can create its execution (UTC, the app's clock).
    window_to: datetime.datetime
    #: ``createdTime`` of the execution the start was decided on ("" for none).
    before: str
    expires: datetime.datetime
    #: Whether the Durable API answered its start 202.
    landed: bool = False
    #: The request whose next run its start's replace dropped (its answer names it).
    dropped: Optional[str] = None

    def live(self, now: datetime.datetime) -> bool:
        """Whether it still counts at ``now``."""
        return now < self.expires

    def metadata(self) -> Dict[str, str]:
        """The record as lock blob metadata."""
        values = (
            self.key_digest,
            self.fingerprint,
            self.window_to.isoformat(),
            self.before,
            self.expires.isoformat(),
            "1" if self.landed else "0",
        )
        metadata = dict(zip(_FIELDS, values, strict=True))
        if self.dropped is not None:
            metadata[_DROPPED] = self.dropped
        return metadata

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> Optional["Record"]:
        """The record in ``metadata``; None when there is none (or it is unreadable)."""
        try:
            key, fingerprint, window_to, before, expires, landed = (metadata[n] for n in _FIELDS)
            return cls(
                key,
                fingerprint,
                datetime.datetime.fromisoformat(window_to),
                before,
                datetime.datetime.fromisoformat(expires),
                landed == "1",
                metadata.get(_DROPPED),
            )
        except (KeyError, ValueError):
            return None


@dataclass(frozen=True)
class Records:
    """An id's key records: the current one, if any, and the keys later starts moved
    aside (digest prefix, expiry), newest first."""

    current: Optional[Record]
    superseded: Tuple[Tuple[str, datetime.datetime], ...]

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> "Records":
        """The records in ``metadata`` (the unreadable parts left out)."""
        superseded = []
        for item in metadata.get(_SUPERSEDED, "").split(","):
            digest, _, expires = item.partition(":")
            if digest and expires.isdigit():
                moment = datetime.datetime.fromtimestamp(int(expires), datetime.timezone.utc)
                superseded.append((digest, moment))
        return cls(Record.from_metadata(metadata), tuple(superseded))

    def metadata(self) -> Dict[str, str]:
        """The records as lock blob metadata."""
        metadata = {} if self.current is None else self.current.metadata()
        if self.superseded:
            metadata[_SUPERSEDED] = ",".join(
                f"{digest}:{int(expires.timestamp())}" for digest, expires in self.superseded
            )
        return metadata

    def live_current(self, now: datetime.datetime) -> Optional[Record]:
        """The current record, unless it has expired."""
        return self.current if self.current is not None and self.current.live(now) else None

    def with_current(self, record: Optional[Record]) -> "Records":
        """These records with ``record`` as the current one."""
        return replace(self, current=record)

    def superseding(self, now: datetime.datetime) -> "Records":
        """The records after a later start of the id: the current key moved aside (when
        live), expired keys dropped, at most :data:`MAX_SUPERSEDED` kept."""
        kept = [(d, e) for d, e in self.superseded if now < e]
        live = self.live_current(now)
        if live is not None:
            kept.insert(0, (live.key_digest[:_SUPERSEDED_DIGITS], _whole_second(live.expires)))
        return Records(None, tuple(kept[:MAX_SUPERSEDED]))

    def was_superseded(self, key_digest: str, now: datetime.datetime) -> bool:
        """Whether a later start moved ``key_digest``'s record aside (and it still counts)."""
        prefix = key_digest[:_SUPERSEDED_DIGITS]
        return any(digest == prefix and now < e for digest, e in self.superseded)

    def live_until(self) -> Optional[datetime.datetime]:
        """When the last of these records stops counting (None: there is none)."""
        moments = [e for _, e in self.superseded]
        if self.current is not None:
            moments.append(self.current.expires)
        return max(moments, default=None)


def _whole_second(moment: datetime.datetime) -> datetime.datetime:
    """``moment`` rounded up to the whole second (a superseded key is kept to the second)."""
    floor = moment.replace(microsecond=0)
    return floor if floor == moment else floor + datetime.timedelta(seconds=1)


class Verdict(enum.Enum):
    """What a request with a key gets."""

    #: No live record of this key: an ordinary start request (it records the key if it
    #: starts anything).
    NEW = "new"
    #: The key's start is the id's latest start: its answer again, nothing started.
    REPLAY = "replay"
    #: The key was used with another request: 422, nothing started.
    MISMATCH = "mismatch"
    #: The key's start may still be landing: 409 with Retry-After, nothing started.
    IN_PROGRESS = "in-progress"
    #: A later start of the id came after the key's (or its execution was purged): 409,
    #: nothing started.
    SUPERSEDED = "superseded"


def judge(
    records: Records,
    request: KeyedRequest,
    status: Optional[InstanceStatus],
    now: datetime.datetime,
) -> Verdict:
    """Decide what a request with a key gets from the id's ``records`` and its latest
    execution's ``status``, read after the records, at ``now`` (UTC)."""
    record = records.live_current(now)
    if record is None or record.key_digest != request.key_digest:
        if records.was_superseded(request.key_digest, now):
            return Verdict.SUPERSEDED
        return Verdict.NEW
    if record.fingerprint != request.fingerprint:
        return Verdict.MISMATCH
    if record.landed:
        # No later start was made through this app: the instance is the key's start's,
        # run on (continued as new) or ended; or, when it is gone, it was purged.
        return Verdict.REPLAY if status is not None else Verdict.SUPERSEDED
    if status is not None and _created_after(status, record.before):
        return Verdict.REPLAY  # its answer was lost, and its execution shows
    if now <= record.window_to:
        return Verdict.IN_PROGRESS
    return Verdict.NEW  # its start never landed: the retry is carried out anew


def created_second(status: Optional[InstanceStatus]) -> Optional[datetime.datetime]:
    """The whole second ``status``'s execution was created in (as the extension writes
    it), None for no status."""
    if status is None or status.created_time is None:
        return None
    created: datetime.datetime = status.created_time
    if created.tzinfo is None:
        created = created.replace(tzinfo=datetime.timezone.utc)
    return created.replace(microsecond=0)


def _created_after(status: InstanceStatus, before: str) -> bool:
    """Whether ``status`` was created in a later second than ``before`` (a
    :func:`created_text`; "" for none)."""
    created = created_second(status)
    if created is None:
        return False
    return not before or created > datetime.datetime.fromisoformat(before)


def created_text(status: Optional[InstanceStatus]) -> str:
    """The ``createdTime`` second of ``status``, as a record keeps it ("" for none)."""
    created = created_second(status)
    return "" if created is None else created.isoformat()
