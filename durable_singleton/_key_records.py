"""The starter's side of the Idempotency-Key records kept in the id's lock blob (the
rules: durable_singleton._idempotency): what a key says before a start, the record a start
writes under the lease (fenced by the lease in storage itself), and marking or undoing it
once the start was answered."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import math
from typing import Optional

from . import _problems as problems
from . import _telemetry as telemetry
from ._durable import InstanceStatus
from ._idempotency import Record, Records, Verdict, created_second, created_text, judge
from ._lock import HeldLock, LockLost, LockUnavailable, StartLocks
from ._problems import ProblemError
from ._request import StartRequest
from ._settings import Settings
from ._waiting import utc_now

logger = logging.getLogger("durable_singleton._starter")

#: A key record is looked for while it may be live by the app's clock: the lock blob's
#: last modification is storage's clock.
_CLOCK_ALLOWANCE = datetime.timedelta(minutes=5)
#: The longest a keyed start waits for the second of the execution before it to pass
#: (more would mean the clocks of the app's instances disagree by that much).
MAX_SECOND_WAIT = 2.0


class KeyRecords:
    """One start request's side of its id's key records: what its key says, and the
    records it wrote (``prior``: as they were before; ``written``: as it left them)."""

    def __init__(
        self, request: StartRequest, task_hub: str, settings: Settings, durable_timeout: float
    ) -> None:
        """For ``request`` in ``task_hub``; a keyed record's window covers a start call of
        ``durable_timeout`` seconds."""
        self.request = request
        self.task_hub = task_hub
        self.settings = settings
        self.durable_timeout = durable_timeout
        self.prior: Optional[Records] = None
        self.written: Optional[Records] = None

    @property
    def _ttl(self) -> datetime.timedelta:
        return datetime.timedelta(seconds=self.settings.idempotency_ttl_seconds)

    async def replayed(
        self, locks: StartLocks, status: Optional[InstanceStatus]
    ) -> Optional[Record]:
        """The key's record when the request's key started the current execution (its answer
        is given again), read without the lease; raises the key's problem (mismatch, in
        progress, superseded); None for a start to decide as an ordinary one."""
        with telemetry.step("idempotency.read"):
            metadata = await locks.read_record(self.task_hub, self.request.instance_id)
        return self.replayed_by(Records.from_metadata(metadata or {}), status)

    def replayed_by(self, records: Records, status: Optional[InstanceStatus]) -> Optional[Record]:
        """:meth:`replayed`, given ``records``."""
        keyed = self.request.keyed
        assert keyed is not None
        instance_id = self.request.instance_id
        now = utc_now()
        verdict = judge(records, keyed, status, now)
        if verdict is Verdict.MISMATCH:
            raise ProblemError(problems.idempotency_key_mismatch(instance_id))
        if verdict is Verdict.IN_PROGRESS:
            assert records.current is not None
            wait = math.ceil((records.current.window_to - now).total_seconds()) + 1
            raise ProblemError(problems.idempotency_key_in_progress(instance_id, wait))
        if verdict is Verdict.SUPERSEDED:
            raise ProblemError(problems.idempotency_key_superseded(instance_id))
        return records.current if verdict is Verdict.REPLAY else None

    async def held(self, held: HeldLock) -> Records:
        """The id's key records, read under the lease only when they may have changed
        since this process last saw them (:meth:`HeldLock.known_metadata`)."""
        metadata = held.known_metadata(self._ttl + _CLOCK_ALLOWANCE)
        if metadata is None:
            with telemetry.step("idempotency.read"):
                metadata = await held.read_metadata()
        return Records.from_metadata(metadata)

    async def record_start(
        self, held: HeldLock, before: Optional[InstanceStatus], dropped: Optional[str]
    ) -> None:
        """Under the lease, before the start is sent: move a live key record aside (this
        start comes after its key's), and for a request with a key write its own, naming
        the next run its replace ``dropped`` (for the answer given again).

        Costs no storage call for a request without a key unless a record may be live
        (see :meth:`HeldLock.known_metadata`).
        """
        keyed = self.request.keyed
        prior = await self.held(held)
        now = utc_now()
        own = prior.live_current(now)
        if keyed is None and own is None:
            return
        base = prior
        if keyed is not None and own is not None and own.key_digest == keyed.key_digest:
            base = prior.with_current(None)  # its own earlier attempt, which never landed
        records = base.superseding(now)
        if keyed is not None:
            await _past_the_second_of(before)
            # The record's window: from now to the end of the time the lease is proven
            # held; the start call is bounded by that time.
            await held.fence(self.durable_timeout + self.settings.storage_timeout_seconds)
            began = utc_now()
            record = Record(
                keyed.key_digest,
                keyed.fingerprint,
                began + datetime.timedelta(seconds=max(held.remaining(), 0.0)),
                created_text(before),
                began + self._ttl,
                dropped=dropped,
            )
            records = records.with_current(record)
        with telemetry.step("idempotency.record"):
            await held.write_metadata(records.metadata())
        self.prior, self.written = prior, records

    async def mark_landed(self, held: HeldLock) -> None:
        """After the key's start was answered 202, say so in its record. Best effort: an
        unmarked record is judged from the instance's status instead."""
        records = self.written
        if records is None or records.current is None:
            return
        landed = dataclasses.replace(records.current, landed=True, window_to=utc_now())
        with contextlib.suppress(LockLost, LockUnavailable):
            with telemetry.step("idempotency.record"):
                await held.write_metadata(records.with_current(landed).metadata())

    async def restore(self, held: HeldLock) -> None:
        """Put the key records back as they were once the start was answered without
        starting: no start came after the keys it moved aside, and a retry of its own
        key is a new request at once, not "in progress" until its window ends. Best
        effort: records left behind only make a retry wait for the window, or answer
        "superseded" where nothing newer started."""
        if self.prior is not None:
            with contextlib.suppress(LockLost, LockUnavailable):
                await held.write_metadata(self.prior.metadata())


async def _past_the_second_of(before: Optional[InstanceStatus]) -> None:
    """Wait until this machine's clock has left the whole second ``before`` was created
    in: the host stamps the next execution's ``createdTime`` with this clock, so the
    two cannot share a second and a lost answer can be told from the status."""
    created = created_second(before)
    if created is None:
        return
    wait = (created + datetime.timedelta(seconds=1) - utc_now()).total_seconds()
    if wait > MAX_SECOND_WAIT:
        logger.warning("The instance before this start was created %.1f s ahead.", wait)
    if wait > 0:
        await asyncio.sleep(min(wait, MAX_SECOND_WAIT))
