"""SingletonInstance's requests: read an instance's status, or stop it.

The same validation and problem types as the starter; the Durable extension's system
key is never needed by the caller, and with ``SINGLETON_MANAGEMENT_LINKS=app`` never
leaves the app.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Tuple

import azure.functions as func

from . import _answers as answers
from . import _problems as problems
from ._durable import (
    DurableClient,
    DurableUnavailable,
    InstanceEnded,
    InstanceStatus,
    StopOutcomeUnknown,
    may_still_land,
)
from ._handover import close_channel, dropped_by_terminate, stop_through_channel
from ._invocation import Invocation
from ._limited import pass_on_terminated, slot_of
from ._links import Links
from ._lock import LockUnavailable
from ._next_run import Closed
from ._policy import FINISHED
from ._problems import ProblemError
from ._request import check_stop
from ._root import Root
from ._starter import hold_lock
from ._stop import STOP_EVENT
from ._validation import read_choice, read_route

TERMINATE_REASON = "Terminated through DELETE with mode=terminate."

logger = logging.getLogger(__name__)


class StopMode(str, enum.Enum):
    """How DELETE ends an instance (query ``mode``)."""

    #: Raise the job's ``Stop`` event: it finishes its item in flight, then completes.
    STOP = "stop"
    #: Terminate at once; an activity already running still finishes its work.
    TERMINATE = "terminate"


async def status_or_stop(call: Invocation) -> Tuple[func.HttpResponse, str]:
    """Answer GET (status) or DELETE (stop) on an instance: 200 with the status, 202 when a
    stop was requested, or problem+json (404 unknown instance, 409 already ended)."""
    function_name, instance_id = read_route(call.req, call.root.catalog.names)
    if call.req.method.upper() == "GET":
        status = await _existing(call.durable, instance_id, function_name)
        return answers.instance_status(status, instance_id), "status"
    # Every part of the request is checked before the Durable API is called.
    mode = read_choice(call.req, "mode", StopMode, StopMode.STOP)
    ended = await end_instance(
        call.durable, call.root, function_name, instance_id, mode, call.links
    )
    dropped = ended.dropped
    return answers.stop_requested(instance_id, call.links, dropped), f"{mode.value}-requested"


async def _existing(
    durable: DurableClient, instance_id: str, function_name: str
) -> InstanceStatus:
    """The instance's status; 404 when no instance of ``function_name`` has the id."""
    status = await durable.status(instance_id)
    if status is None or status.name != function_name:
        raise ProblemError(problems.instance_not_found(instance_id, function_name))
    return status


@dataclass(frozen=True)
class Ended:
    """What a stop request came to: the status the instance had when asked, and the
    request whose next (or waiting) run it dropped, when the instance showed that."""

    status: InstanceStatus
    dropped: Optional[str]


async def end_instance(
    durable: DurableClient,
    root: Root,
    function_name: str,
    instance_id: str,
    mode: StopMode,
    links: Links,
) -> Ended:
    """Ask the instance to end, and say what that dropped. A Stop goes through the id's
    next-run channel (:func:`~durable_singleton._handover.stop_through_channel`); a terminate
    is sent under the id's lock, fenced, and then closes the channel. Raises ProblemError: 400
    for a Stop to an orchestrator that does not take one, 404 for no such instance, 409 when
    it has ended; LockBusy when a terminate waited too long for the lock."""
    hub = durable.task_hub
    if mode is StopMode.STOP:
        check_stop(root.catalog, function_name, "DELETE with mode=terminate")
        status = await _existing(durable, instance_id, function_name)

        async def stop(data: Any) -> None:
            # Not under the lock: a Stop is meant for whichever instance is active.
            await durable.raise_event(instance_id, STOP_EVENT, data, None)

        with _refused_once_ended(status, instance_id, links), _sent_may_have_acted(instance_id):
            dropped = await stop_through_channel(root, hub, function_name, instance_id, stop)
        return Ended(status, dropped)
    held = await hold_lock(
        root.locks(), durable.task_hub, instance_id, root.settings.lock_wait_seconds
    )
    try:
        status = await _existing(durable, instance_id, function_name)
        with _refused_once_ended(status, instance_id, links):
            # Fenced as every call under the lock is (LockLost when the lease cannot be
            # proven for the call's time).
            fenced = await held.fence(durable.timeout)
            with _sent_may_have_acted(instance_id):
                await durable.terminate(instance_id, TERMINATE_REASON, fenced)
            closed = await _closed_after_terminate(root, hub, function_name, instance_id)
    except BaseException as error:
        if may_still_land(error):
            held.abandon()  # the terminate may still land: no start of the id may come first
        else:
            await held.release()
        raise
    await held.release()
    slot = slot_of(function_name, instance_id, root)
    if slot is not None:
        # A slot of a key with a limit: its queue's head need not wait for the sweep.
        passing = pass_on_terminated(function_name, slot, instance_id, durable, root)
        root.locks().background.spawn(passing)
    # Read (bounded) once the lock is let go: a start need not wait for this instance's end.
    wait = root.settings.next_run_wait_seconds
    return Ended(status, await dropped_by_terminate(durable, instance_id, closed, wait))


async def _closed_after_terminate(
    root: Root, task_hub: str, function_name: str, instance_id: str
) -> Closed:
    """Close the id's channel once the terminate landed. When storage fails the close the
    terminate stands, so the answer still says it was carried out; the next run is not
    dropped, and runs after the id's next start (as one an instance that failed left)."""
    try:
        return await close_channel(root, task_hub, function_name, instance_id)
    except LockUnavailable as error:
        logger.warning("A terminate was carried out; its next run was not dropped: %s", error)
        return Closed(None)


@contextlib.contextmanager
def _sent_may_have_acted(instance_id: str) -> Iterator[None]:
    """A Stop or terminate that reached the Durable API and lost its answer may have been
    carried out: StopOutcomeUnknown, never "could not be reached"."""
    try:
        yield
    except DurableUnavailable as error:
        if error.may_have_acted:
            raise StopOutcomeUnknown(instance_id) from error
        raise


@contextlib.contextmanager
def _refused_once_ended(status: InstanceStatus, instance_id: str, links: Links) -> Iterator[None]:
    """409 ``instance-not-running`` when the instance had ended when it was read, or ended
    before the Stop or terminate reached it (the request failed when it was purged
    meanwhile)."""
    if status.runtime_status in FINISHED:
        described = answers.describe(status, instance_id, links)
        raise ProblemError(problems.instance_not_running(described))
    try:
        yield
    except InstanceEnded as ended:
        if ended.status is None:  # purged since it was read: the request failed
            raise ended.failure from None
        described = answers.describe(ended.status, instance_id, links)
        raise ProblemError(problems.instance_not_running(described)) from None
