"""The starter's side of an id's next-run channel (the rules: durable_singleton._next_run):
the input of a start that opens the channel, opening and confirming it around that start,
a bufferOne or debounced request's write, and the Stop and terminate that drop what it
holds."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from typing import Any, Awaitable, Callable, Optional, TypeVar

from . import _telemetry as telemetry
from ._documents import Tagged
from ._durable import DurableClient, DurableFailure, DurableUnavailable, InstanceEnded
from ._errors import OutcomeUnknown, SingletonError
from ._lock import HeldLock, LockLost, LockUnavailable
from ._next_run import (
    Channel,
    Closed,
    Offered,
    close,
    confirmed,
    drop_waiting,
    offer,
    opened,
    shown_run,
    start_member,
    stop_event,
    stop_run,
    takes_requests,
)
from ._next_run_store import ChannelWriteUnknown
from ._policy import FINISHED, OnConflict
from ._request import StartRequest
from ._root import Root
from ._waiting import Pauses, utc_now

logger = logging.getLogger("durable_singleton._starter")

T = TypeVar("T")

#: While a request waits for an instance that is ending its run to end, and while a
#: terminate's answer waits for the instance's end.
FIRST_END_POLL_SECONDS = 0.05
MAX_END_POLL_SECONDS = 1.0

#: How many times a Stop follows the instance to the next run it took meanwhile.
MAX_STOP_ROUNDS = 3


class NextRunOutcomeUnknown(OutcomeUnknown):
    """A write to the id's next-run channel was sent and its answer lost: whether the
    next run was kept (or dropped, for a stop) is unknown. ``members``: the request's
    id, and what the write replaced or dropped if it landed (the answer's members)."""

    def __init__(self, instance_id: str, **members: Optional[str]):
        super().__init__(instance_id)
        self.instance_id = instance_id
        self.members = {name: value for name, value in members.items() if value is not None}


class ChannelInUse(Exception):
    """The id's channel holds a run that has not ended, and the status was not read
    under the lease: the start must read it before it opens the channel."""


class Handover:
    """One start request's side of its id's channel: ``request_id``, a bufferOne or debounced
    request's own id; ``run_id``, the run a start begins; ``channelled``, whether the
    orchestrator takes next runs; ``due_at``, when a debounced start's run is due."""

    def __init__(self, request: StartRequest, durable: DurableClient, root: Root) -> None:
        """For ``request``, through ``durable`` (its task hub names the channel) and the
        app's ``root`` (its catalog, settings and channel store)."""
        self.request = request
        self.durable = durable
        self.root = root
        self.id = request.instance_id
        self.request_id: Optional[str] = (
            _new_id() if request.on_conflict is OnConflict.BUFFER_ONE else None
        )
        # A start that names its run (a queued request's, in its key's slot) is handed
        # over through the key's queue, not through a channel of its own.
        self.channelled = (
            root.catalog.accepts_next_run(request.function_name) and request.run_id is None
        )
        self.run_id = request.run_id or self.request_id or _new_id()
        self.due_at: Optional[str] = None
        #: The channel as read while the lease was requested (:meth:`read_ahead`).
        self._ahead: Optional["asyncio.Future[Tagged[Channel]]"] = None
        #: The channel as :meth:`open` left it, with its ETag: confirmed (or withdrawn)
        #: with one conditional write, read again only if it changed since.
        self._opened: Optional["Tagged[Channel]"] = None

    def read_ahead(self) -> None:
        """Read the id's channel now, while the lease is requested, so that :meth:`open`
        writes on what it read without reading again (its write is conditional on it,
        so a channel changed since is read again). Once per request."""
        if self.channelled and self._ahead is None:
            read = self.root.next_runs().read_tagged(self.durable.task_hub, self.id)
            self._ahead = asyncio.ensure_future(read)
            # A failure is the open's to meet (it reads again); never an unretrieved one.
            self._ahead.add_done_callback(lambda done: done.cancelled() or done.exception())

    async def _read_earlier(self) -> "Optional[Tagged[Channel]]":
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return None
        try:
            return await ahead
        except LockUnavailable:
            return None

    def start_input(self) -> "tuple[Any, Optional[str], Optional[str]]":
        """The input a start sends, and when a debounced run is due (and at the latest):
        a start of an orchestrator that takes next runs names its run, its channel's
        task hub and its due time in the input."""
        if self.request.run_id is not None:
            member = start_member(self.run_id, self.durable.task_hub, None, None)
            return {**(self.request.input or {}), "run": member}, None, None
        if not self.channelled:
            return self.request.input, None, None
        due_at = latest_at = None
        if self.request.debounce is not None:
            due_at, latest_at = self.request.debounce.times(utc_now())
        member = start_member(self.run_id, self.durable.task_hub, due_at, latest_at)
        self.due_at = due_at
        return {**(self.request.input or {}), "run": member}, due_at, latest_at

    async def open(
        self, held: HeldLock, due_at: Optional[str], latest_at: Optional[str], checked: bool
    ) -> Optional[Channel]:
        """Before the start is sent, under the lease: the id's channel is this start's
        (``starting`` until :meth:`confirm`), keeping a next run its last instance did not take;
        returns the channel as it was (for :meth:`withdraw`). Without ``checked`` (a status read
        under the lease) it opens only a channel whose run has ended (or none), else raises
        :class:`ChannelInUse` and writes nothing. LockUnavailable: unknown whether it was
        written; LockLost: the lease cannot be proven for the write."""
        if not self.channelled:
            return None
        write_time = self.root.settings.storage_timeout_seconds
        await held.fence(write_time * 2)
        input_, run = self.request.input, self.run_id

        def opening(previous: Optional[Channel]) -> "tuple[Channel, Optional[Channel]]":
            if not checked and previous is not None and not previous.ended:
                raise ChannelInUse()
            # Decided only while the lease is certain for the write's whole time limit: a
            # holder paused since its fence (past its lease) writes nothing.
            if held.remaining() < write_time:
                raise LockLost("the lease could not be proven for the next-run channel's write")
            return opened(previous, run, input_, due_at, latest_at), previous

        read = await self._read_earlier()
        try:
            with telemetry.step("nextrun.open"):
                previous, self._opened = await self.root.next_runs().change_tagged(
                    self.durable.task_hub, self.id, opening, read
                )
                return previous
        except ChannelWriteUnknown as error:  # nothing is started on an unknown channel
            raise LockUnavailable("opening the next-run channel") from error

    async def withdraw(self, previous: Optional[Channel]) -> None:
        """The runtime refused the start: the channel goes back to what it was before :meth:`open`,
        unless it changed since. Only logged on failure: a channel left ``starting`` takes no
        request and is replaced by the next start's."""
        if previous is None:
            return
        run = self.run_id

        def withdrawing(channel: Optional[Channel]) -> "tuple[Optional[Channel], None]":
            ours = channel is not None and channel.starting and channel.run == run
            return (previous if ours else None), None

        await self._best_effort("withdrawn", withdrawing)

    async def confirm(self) -> None:
        """The start created the instance: its channel takes requests from now on. Sent after the
        answer, before the lease is released; if it fails, the first request that reads a status
        showing the run confirms it, so a failure only delays requests."""
        if not self.channelled:
            return
        run = self.run_id
        with telemetry.step("nextrun.confirm"):
            await self._best_effort("confirmed", lambda channel: (confirmed(channel, run), None))

    async def _best_effort(
        self, done: str, decide: Callable[[Optional[Channel]], "tuple[Optional[Channel], None]"]
    ) -> None:
        """Change the channel :meth:`open` wrote, starting from what it left."""
        try:
            await self.root.next_runs().change(
                self.durable.task_hub, self.id, decide, self._opened
            )
        except (LockUnavailable, ChannelWriteUnknown) as error:
            logger.warning("The next-run channel was not %s: %s", done, error)

    async def offer(self, shown: Optional[str]) -> Optional[Offered]:
        """Make the request's input the active instance's next run (or its waiting run's input)
        with one conditional write, the status showing run ``shown``; None when the channel takes
        nothing (the run is ending, was not started through the app, or is not yet confirmed).
        NextRunOutcomeUnknown when the write's answer was lost and reading back could not tell."""
        assert self.request_id is not None
        request_id, input_ = self.request_id, self.request.input
        asked = None
        if self.request.debounce is not None:
            asked, _ = self.request.debounce.times(utc_now())

        def offering(channel: Any) -> "tuple[Any, Optional[Offered]]":
            if not takes_requests(channel, shown):
                return None, None
            offered = offer(channel, request_id, input_, asked)
            return offered.channel, offered

        try:
            with telemetry.step("nextrun.offer"):
                return await self.root.next_runs().change(self.durable.task_hub, self.id, offering)
        except ChannelWriteUnknown as error:
            maybe: Optional[Offered] = error.result
            raise NextRunOutcomeUnknown(
                self.id,
                requestId=request_id,
                replacedRequestId=maybe.replaced if maybe is not None else None,
            ) from error


def shown_by(status: Any) -> Optional[str]:
    """The run an instance's status (an InstanceStatus, or None) shows."""
    return shown_run(status.custom_status) if status is not None else None


async def stop_through_channel(
    root: Root,
    task_hub: str,
    function_name: str,
    instance_id: str,
    send: Callable[[Any], Awaitable[None]],
) -> Optional[str]:
    """Send a Stop (``send(data)``) naming the channel's run, then drop its next run with one
    conditional write, so the instance can never take it afterwards; return the request
    dropped. If the instance took it in between, that run is sent a Stop of its own and
    nothing is dropped. A waiting (debounced) run is dropped by the write alone, so for it the
    write comes first and the Stop only once it landed. No channel: nothing is dropped.
    Raises what ``send`` raises for the first Stop (nothing dropped), LockUnavailable when the
    channel cannot be read (nothing sent), NextRunOutcomeUnknown when the drop's answer was
    lost."""
    if not root.catalog.accepts_next_run(function_name):
        await send(stop_event(None))
        return None
    channel = await root.next_runs().read(task_hub, instance_id)
    if channel is not None and channel.waiting and not channel.ended:
        # A waiting run is dropped by the channel alone: its timer then finds it stopped
        # and the instance ends. So the drop is written first, and a Stop whose drop
        # cannot be written sends nothing; the event only makes the end prompt.
        dropped = await _in_channel(root, task_hub, instance_id, drop_waiting)
        if dropped is not None:
            try:
                await send(stop_event(channel.run))
            except InstanceEnded:
                pass  # its timer fired meanwhile and found the run dropped: it ended so
            except (DurableUnavailable, DurableFailure) as error:
                # Dropped all the same: the instance ends when its timer finds it so.
                logger.warning("A waiting run was dropped; its Stop was not sent: %s", error)
            except SingletonError as error:
                # Not sent (the fence refused it): the caller goes no further, and the
                # answer names the run dropped all the same.
                error.dropped_request_id = dropped.dropped
                raise
            return dropped.dropped
        channel = await root.next_runs().read(task_hub, instance_id)  # it began meanwhile
    run = channel.run if channel is not None else None
    await send(stop_event(run))
    for _ in range(MAX_STOP_ROUNDS):
        try:
            stopped = await _in_channel(
                root, task_hub, instance_id, functools.partial(stop_run, run=run)
            )
        except LockUnavailable:
            return None  # the Stop was sent; the next run was not dropped
        if not stopped.moved:
            return stopped.dropped
        run = stopped.run
        with contextlib.suppress(InstanceEnded):
            await send(stop_event(run))
    return None


async def close_channel(root: Root, task_hub: str, function_name: str, instance_id: str) -> Closed:
    """After a terminate was sent: the channel takes nothing more and its next (or waiting) run
    is dropped; return what it removed and the run it had handed to the instance. After the
    terminate, so a terminate that fails loses no next run. Raises NextRunOutcomeUnknown or
    LockUnavailable."""
    if not root.catalog.accepts_next_run(function_name):
        return Closed(None)
    return await _in_channel(root, task_hub, instance_id, close)


async def dropped_by_terminate(
    durable: DurableClient, instance_id: str, closed: Closed, wait: float
) -> Optional[str]:
    """The request a terminate dropped: a run the channel handed to the instance is dropped
    too when the instance ends before beginning it, which its status shows once ended (read
    for at most ``wait`` seconds; after that only what the close removed is claimed)."""
    if closed.handed is None or closed.dropped is not None:
        return closed.dropped
    polls = Pauses(FIRST_END_POLL_SECONDS, MAX_END_POLL_SECONDS, wait)
    try:
        async for status in polls.looks(lambda: durable.status(instance_id)):
            if status is None:
                return None  # purged: its end cannot be read
            if status.runtime_status in FINISHED:
                return closed.after_end(shown_by(status))
    except (DurableUnavailable, DurableFailure):
        pass
    return None


async def _in_channel(
    root: Root,
    task_hub: str,
    instance_id: str,
    decide: Callable[[Optional[Channel]], "tuple[Optional[Channel], T]"],
) -> T:
    try:
        with telemetry.step("nextrun.end"):
            return await root.next_runs().change(task_hub, instance_id, decide)
    except ChannelWriteUnknown as error:
        dropped = getattr(error.result, "dropped", error.result)
        raise NextRunOutcomeUnknown(
            instance_id, droppedRequestId=dropped if isinstance(dropped, str) else None
        ) from error


def _new_id() -> str:
    return str(uuid.uuid4())
