"""HttpStartSingle's work: validate -> status -> decide -> lock -> start -> respond.

The starter carries out what :mod:`durable_singleton.policy` decides and never decides
itself. Every answer, errors included, is an HTTP response: nothing escapes
:func:`handle_start_request`.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import random
import time
from typing import Any, Optional, Tuple

import azure.functions as func
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus

from . import problems
from .catalog import orchestrator_names
from .durable import (
    DurableApi,
    DurableFailure,
    DurableUnavailable,
    StartOutcome,
    StartOutcomeUnknown,
)
from .job import STOP_EVENT
from .lock import HeldLock, LockLost, LockUnavailable
from .policy import FINISHED, REPLACES, Action, decide, must_recheck_under_lock
from .problems import ProblemError
from .settings import ConfigurationError, Settings, load_settings, load_storage_connection
from .storage import shared_locks
from .validation import StartRequest, parse_start_request

logger = logging.getLogger("durable_singleton.starter")

#: Retry-After (seconds) for the 503 answers.
RETRY_AFTER_UNAVAILABLE = 5
RETRY_AFTER_LOCK_BUSY = 2

#: A caller that finds the lock taken checks again after a jittered pause that starts
#: short (the holder usually finishes within one Durable API call) and doubles up to
#: a cap, so waiting callers neither hammer the APIs nor queue behind one another.
FIRST_PAUSE_SECONDS = 0.02
MAX_PAUSE_SECONDS = 0.5

#: While the old instance of onConflict=terminateExisting or stopExisting winds down.
FIRST_POLL_SECONDS = 0.25
MAX_POLL_SECONDS = 2.0


async def handle_start_request(req: func.HttpRequest, starter: str) -> func.HttpResponse:
    """Answer one HttpStartSingle request.

    Parameters
    ----------
    req : func.HttpRequest
        The request, with route parameters ``functionName`` and ``instanceId``.
    starter : str
        The ``durableClient`` binding's JSON.

    Returns
    -------
    func.HttpResponse
        202 started, 200 existing instance used, or a problem+json answer.
    """
    began = time.perf_counter()
    outcome = "internal-error"
    try:
        response, outcome = await _answer(req, starter)
    except ProblemError as error:
        response, outcome = error.problem.response(), error.problem.kind
    except Exception as error:  # the last line of defence: never a traceback to the caller
        logger.error("HttpStartSingle failed unexpectedly: %s", type(error).__name__)
        response = problems.internal_error().response()
    logger.info(
        "HttpStartSingle instance=%s function=%s decision=%s status=%d duration_ms=%.1f",
        _loggable(req.route_params.get("instanceId", "")),
        _loggable(req.route_params.get("functionName", "")),
        outcome,
        response.status_code,
        (time.perf_counter() - began) * 1000,
    )
    return response


async def _answer(req: func.HttpRequest, starter: str) -> Tuple[func.HttpResponse, str]:
    """Run the request; sort the failures of the services it calls into problems."""
    try:
        settings = load_settings()
        request = parse_start_request(req, settings, orchestrator_names())
        durable = DurableApi(starter, settings.durable_timeout_seconds)
        run = _StartRun(req, request, durable, settings)
        response, action = await run.execute()
        return response, action.value
    except ConfigurationError as error:
        problem = problems.misconfigured(str(error))
    except DurableUnavailable:
        problem = problems.durable_unavailable(RETRY_AFTER_UNAVAILABLE)
    except DurableFailure as failure:
        problem = problems.durable_error(failure.stage)
    except LockUnavailable as error:
        logger.warning("Start lock storage unavailable: %s", error)
        problem = problems.storage_unavailable(RETRY_AFTER_UNAVAILABLE)
    except LockLost as error:
        logger.warning("Start lock lost before acting: %s", error)
        problem = problems.lock_lost(RETRY_AFTER_UNAVAILABLE)
    raise ProblemError(problem)


class _StartRun:
    """One validated start request, carried out."""

    def __init__(
        self, req: func.HttpRequest, request: StartRequest, durable: DurableApi, settings: Settings
    ):
        self.req = req
        self.request = request
        self.durable = durable
        self.settings = settings
        self.id = request.instance_id

    async def execute(self) -> Tuple[func.HttpResponse, Action]:
        """Decide on the current status; take the lock only for a start."""
        status = await self.durable.status(self.id)
        action = self._decide(status)
        if not action.starts:
            # Fast path: refusing or pointing at the running instance needs no lock.
            return self._answer(action, status), action

        locks = shared_locks(
            load_storage_connection(),
            self.settings.lock_container,
            self.settings.storage_timeout_seconds,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.lock_wait_seconds
        pause = FIRST_PAUSE_SECONDS
        while action.starts:
            held = await locks.try_acquire(
                self.durable.task_hub, self.id, expect_new=status is None
            )
            if held is not None:
                return await self._holding(held, status, action)
            # Another caller is starting this id. Rather than queue for the lock, look
            # again at the instance once the holder is likely done: when its start
            # shows, the decision is a refusal (or useExisting) and this caller is
            # answered without the lock. A holder in this process says when it is
            # done; one elsewhere is polled for, with jittered, growing pauses.
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ProblemError(problems.lock_busy(RETRY_AFTER_LOCK_BUSY))
            if not await locks.wait_for_local_holder(self.durable.task_hub, self.id, remaining):
                await asyncio.sleep(min(remaining, pause * random.uniform(0.5, 1.5)))
                pause = min(pause * 2, MAX_PAUSE_SECONDS)
            status = await self.durable.status(self.id)
            action = self._decide(status)
        return self._answer(action, status), action

    async def _holding(
        self, held: HeldLock, status: Optional[DurableOrchestrationStatus], action: Action
    ) -> Tuple[func.HttpResponse, Action]:
        """Carry the start out under ``held``, and let go of the lease as is safe."""
        acquired_at = _utc_now()
        try:
            answer = await self._under_lock(held, status, action)
        except _Ambiguous as ambiguous:
            # The start may still land: keep the lease until it runs out so no other
            # caller can start over it (see durable_singleton.lock).
            held.abandon()
            return await self._settle(ambiguous.before, acquired_at)
        except BaseException:
            # Released before the error answer, so an immediate retry is never
            # blocked by this request's lease.
            await held.release()
            raise
        # The caller need not wait for the release: the start (or the status that
        # refused it) is visible now, so later callers are answered from the
        # instance's status without needing this lock.
        held.release_in_background()
        return answer

    async def _under_lock(
        self, held: HeldLock, status: Optional[DurableOrchestrationStatus], action: Action
    ) -> Tuple[func.HttpResponse, Action]:
        request = self.request
        if must_recheck_under_lock(action, request.on_conflict, request.reuse):
            status = await self.durable.status(self.id)
            action = self._decide(status)
            if not action.starts:
                return self._answer(action, status), action
        if action in REPLACES:
            assert status is not None  # only an existing instance is replaced
            await self._replace_and_wait(held, action, status)
        try:
            outcome = await self.durable.start(
                request.function_name,
                self.id,
                request.input,
                await held.fence(self.durable.timeout),
            )
        except (StartOutcomeUnknown, asyncio.CancelledError) as error:
            raise _Ambiguous(status) from error
        if outcome is StartOutcome.STARTED:
            return self.durable.started_response(self.req, self.id), action
        # The extension refused: an instance with the id is active after all (started
        # outside this app's lock, for example). Answer as the policy says for it.
        status = await self.durable.status(self.id)
        refused = self._decide(status)
        if refused.starts:
            refused = Action.REJECT_ACTIVE
        return self._answer(refused, status), refused

    async def _settle(
        self, before: Optional[DurableOrchestrationStatus], acquired_at: datetime.datetime
    ) -> Tuple[func.HttpResponse, Action]:
        """Answer a start whose answer was lost from the instance's status.

        An instance created while this request held the lock can only be this
        request's start (or a newer one): 202. Otherwise the outcome is unknown and
        the answer says so, never that nothing was started.
        """
        try:
            status = await self.durable.status(self.id)
        except (DurableUnavailable, DurableFailure):
            status = None
        if status is not None and _created_since(status, before, acquired_at):
            logger.info(
                "Start of %s was answered late; its status shows it started.", _loggable(self.id)
            )
            return self.durable.started_response(self.req, self.id), Action.START
        raise ProblemError(
            problems.start_outcome_unknown(
                self.durable.links(self.req, self.id), RETRY_AFTER_UNAVAILABLE
            )
        )

    async def _replace_and_wait(
        self, held: HeldLock, action: Action, status: DurableOrchestrationStatus
    ) -> None:
        """Ask the active instance to end (Stop or terminate) and wait, bounded, until
        it has; on time-out answer 409 with nothing started."""
        try:
            budget = await held.fence(self.durable.timeout)
            if action is Action.STOP_THEN_START:
                await self.durable.raise_event(self.id, STOP_EVENT, None, budget)
            else:
                await self.durable.terminate(
                    self.id,
                    "Replaced by a start request with onConflict=terminateExisting.",
                    budget,
                )
        except DurableFailure:
            # 404/410: the instance ended (or vanished) before the request reached it.
            status = await self.durable.status(self.id)
            if status is not None and status.runtime_status not in FINISHED:
                raise
        loop = asyncio.get_running_loop()
        waited = self.settings.terminate_timeout_seconds
        deadline = loop.time() + waited
        poll = FIRST_POLL_SECONDS
        while True:
            status = await self.durable.status(self.id)
            if status is None or status.runtime_status in FINISHED:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                timeout_problem = (
                    problems.stop_timeout
                    if action is Action.STOP_THEN_START
                    else problems.termination_timeout
                )
                raise ProblemError(timeout_problem(self._describe(status), waited))
            await asyncio.sleep(min(poll, remaining))
            poll = min(poll * 2, MAX_POLL_SECONDS)

    def _decide(self, status: Optional[DurableOrchestrationStatus]) -> Action:
        runtime_status = status.runtime_status if status is not None else None
        return decide(runtime_status, self.request.on_conflict, self.request.reuse)

    def _answer(
        self, action: Action, status: Optional[DurableOrchestrationStatus]
    ) -> func.HttpResponse:
        """The answer for an action that starts nothing, about the existing ``status``."""
        if status is None:
            # Only reachable if the instance vanished (purged) between two reads.
            return problems.start_refused(self.id).response()
        instance = self._describe(status)
        if action is Action.USE_EXISTING:
            return func.HttpResponse(
                body=json.dumps(instance),
                status_code=200,
                headers={
                    "Content-Type": "application/json",
                    "Location": instance["statusQueryGetUri"],
                },
            )
        if action is Action.REJECT_FINISHED:
            problem = problems.instance_finished(instance, self.request.reuse.value)
        else:
            problem = problems.instance_active(instance)
        return problem.response()

    def _describe(self, status: DurableOrchestrationStatus) -> dict:
        return self.durable.describe(self.req, self.id, status)


class _Ambiguous(Exception):
    """A start was sent under the lock and its answer was lost; ``before`` is the
    status the start was decided on."""

    def __init__(self, before: Optional[DurableOrchestrationStatus]):
        super().__init__()
        self.before = before


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _created_since(
    status: DurableOrchestrationStatus,
    before: Optional[DurableOrchestrationStatus],
    acquired_at: datetime.datetime,
) -> bool:
    """Whether ``status`` describes an instance created after the lock was taken.

    The extension stamps ``createdTime`` with the host's clock, the same machine's
    clock as this worker's. An instance that differs from ``before`` and was created
    after the lock was acquired was started while this request held the lock.
    """
    created = status.created_time
    if created is None:
        return False
    if created.tzinfo is None:
        created = created.replace(tzinfo=datetime.timezone.utc)
    if before is not None and before.created_time == status.created_time:
        return False
    return created >= acquired_at


def _loggable(value: Any, limit: int = 120) -> str:
    """Route values as a log may show them: bounded, printable, no line breaks."""
    text = str(value)[:limit]
    return text.encode("unicode_escape").decode("ascii") or "-"
