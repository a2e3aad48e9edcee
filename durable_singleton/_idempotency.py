"""Retries that get the same answer: the ``Idempotency-Key`` header.

A start that carries a key records, under the id's start lease and before its start
is sent, which key started it: the key's digest, the request's fingerprint, and the
window of time in which its start could create the execution. The record lives in the
lock blob's metadata, so it is written under the same lease as the start (no two
requests can both be the first for a key) and costs no blob of its own. One record per
id is enough: a key's answer is replayed only while its execution is the id's latest.

Which execution a key started is read from the instance's status, never guessed: the
execution whose ``createdTime`` falls inside the key's window. The lease is held for
the whole start call (the call is bounded by the lease's proven time, see
:mod:`durable_singleton._lock`), so no other start by this app can fall inside it.
The extension stamps ``createdTime`` with the host's clock, the same machine's clock
as the app's.

:func:`judge` is the whole rule, pure: what a request with a key gets, given the record
and the status.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

from ._durable import InstanceStatus

#: The request header, and the header on an answer given again.
HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
#: Printable ASCII, space to tilde.
_KEY = re.compile(r"[\x20-\x7e]{1,%d}" % MAX_KEY_LENGTH)
KEY_RULE = f"An Idempotency-Key is 1 to {MAX_KEY_LENGTH} printable ASCII characters, given once."

#: Metadata names on the lock blob (letters only: metadata names are C# identifiers).
_FIELDS = ("idemkey", "idemfingerprint", "idemfrom", "idemto", "idembefore", "idemexpires")


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
    """The key that made the id's latest keyed start, and when its start could land."""

    key_digest: str
    fingerprint: str
    #: The start was sent at ``window_from`` and could create its execution until
    #: ``window_to`` (UTC, the app's clock).
    window_from: datetime.datetime
    window_to: datetime.datetime
    #: ``createdTime`` of the execution the start was decided on ("" for none): never
    #: taken for the key's own.
    before: str
    expires: datetime.datetime

    def metadata(self) -> Dict[str, str]:
        """The record as lock blob metadata."""
        return dict(
            zip(
                _FIELDS,
                (
                    self.key_digest,
                    self.fingerprint,
                    self.window_from.isoformat(),
                    self.window_to.isoformat(),
                    self.before,
                    self.expires.isoformat(),
                ),
                strict=True,
            )
        )

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> Optional["Record"]:
        """The record in ``metadata``; None when there is none (or it is unreadable)."""
        try:
            values = [metadata[name] for name in _FIELDS]
            return cls(
                values[0],
                values[1],
                datetime.datetime.fromisoformat(values[2]),
                datetime.datetime.fromisoformat(values[3]),
                values[4],
                datetime.datetime.fromisoformat(values[5]),
            )
        except (KeyError, ValueError):
            return None


class Verdict(enum.Enum):
    """What a request with a key gets."""

    #: No live record of this key: an ordinary start request (it records the key if it
    #: starts anything).
    NEW = "new"
    #: The key started the id's latest execution: its answer again, nothing started.
    REPLAY = "replay"
    #: The key was used with another request: 422, nothing started.
    MISMATCH = "mismatch"
    #: The key's start may still be landing: 409 with Retry-After, nothing started.
    IN_PROGRESS = "in-progress"
    #: An execution newer than the key's start is the id's latest: 409, nothing started.
    SUPERSEDED = "superseded"


def judge(
    record: Optional[Record],
    request: KeyedRequest,
    status: Optional[InstanceStatus],
    now: datetime.datetime,
) -> Verdict:
    """Decide what a request with a key gets.

    Parameters
    ----------
    record : Record, optional
        The id's record, if it has one.
    request : KeyedRequest
        The request's key and fingerprint.
    status : InstanceStatus, optional
        The id's latest execution, read after the record.
    now : datetime.datetime
        The time now (UTC).

    Returns
    -------
    Verdict
        See :class:`Verdict`.
    """
    if record is None or record.key_digest != request.key_digest or now >= record.expires:
        return Verdict.NEW
    if record.fingerprint != request.fingerprint:
        return Verdict.MISMATCH
    created = _created(status)
    if created is not None and created.isoformat() != record.before:
        if record.window_from <= created <= record.window_to:
            return Verdict.REPLAY
        if created > record.window_to:
            return Verdict.SUPERSEDED
    if now <= record.window_to:
        return Verdict.IN_PROGRESS
    return Verdict.NEW  # its start never landed: the retry is carried out anew


def _created(status: Optional[InstanceStatus]) -> Optional[datetime.datetime]:
    if status is None or status.created_time is None:
        return None
    created: datetime.datetime = status.created_time
    if created.tzinfo is None:
        created = created.replace(tzinfo=datetime.timezone.utc)
    return created


def created_text(status: Optional[InstanceStatus]) -> str:
    """The ``createdTime`` of ``status``, as a record keeps it ("" for none)."""
    created = _created(status)
    return "" if created is None else created.isoformat()
