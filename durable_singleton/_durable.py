"""The Durable Functions API as the starter uses it, through the SDK's own client.

The SDK reports every failure as a plain ``Exception`` (or aiohttp's errors); this
module sorts them into what the starter answers: unreachable (503), unexpected error
(502), the extension's refusal to start over an active instance (409), and a start
whose answer was lost after it was sent (the start may have happened).

Every call is bounded in time: the SDK's own limit is four minutes, far longer than a
caller waits, and longer than the start lock's lease.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import json
from typing import Any, Optional

import aiohttp
import azure.durable_functions as df
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus

from . import _durable_transport as durable_transport
from . import _telemetry as telemetry
from ._policy import FINISHED


class DurableUnavailable(Exception):
    """The Durable API could not be reached (connection refused, reset or timed out).

    For a start, raised only when the request is known not to have been sent.
    """


class StartOutcomeUnknown(Exception):
    """A start request was sent, but its answer was lost (reset or timed out).

    The Durable extension carries out a start whose caller disconnected, so the
    instance may exist now or appear a little later.
    """

    def __init__(self, instance_id: str = ""):
        super().__init__(instance_id)
        self.instance_id = instance_id


class DurableFailure(Exception):
    """The Durable API answered with something the app did not expect.

    ``stage`` says what the starter was doing, in words for the problem detail.
    """

    def __init__(self, stage: str):
        super().__init__(stage)
        self.stage = stage


class InstanceEnded(Exception):
    """A Stop or terminate found the instance already ended: ``status`` is what it
    ended as, or None when it was purged; ``failure`` is how the request failed."""

    def __init__(self, status: Optional[DurableOrchestrationStatus], failure: DurableFailure):
        super().__init__(failure.stage)
        self.status = status
        self.failure = failure


class StartOutcome(enum.Enum):
    """How a start request to the Durable API ended."""

    STARTED = "started"
    REFUSED_AS_DUPLICATE = "duplicate"


class DurableApi:
    """The calls the starter makes, for one invocation's ``durableClient`` binding."""

    def __init__(self, starter: str, timeout: float):
        """Wrap the binding's JSON ``starter`` in the SDK's client; every call made
        through this object ends within ``timeout`` seconds unless given less."""
        self.client = df.DurableOrchestrationClient(starter)
        # The SDK's client takes its request functions from these attributes; the
        # app's transport keeps one caller's failure from closing others' session.
        self.client._post_async_request = durable_transport.post
        self.client._get_async_request = durable_transport.get
        self.client._delete_async_request = durable_transport.delete
        self.timeout = timeout
        self._starter = starter

    @functools.cached_property
    def task_hub(self) -> str:
        """The task hub's name, from the binding (the SDK client does not expose it).

        Read only when the lock needs it: the conflict path never does.
        """
        return str(json.loads(self._starter)["taskHubName"])

    async def status(self, instance_id: str) -> Optional[DurableOrchestrationStatus]:
        """Return the instance's status, or None when no instance has the id.

        The SDK never returns None itself: for an unknown id it returns a falsy status
        whose ``runtime_status`` is None.
        """
        status = await self._call(
            "durable.status",
            "reading the instance status",
            self.client.get_status(instance_id),
            self.timeout,
        )
        if not status or status.runtime_status is None:
            return None
        return status

    async def start(
        self, function_name: str, instance_id: str, input_: Any, timeout: float
    ) -> StartOutcome:
        """Start ``function_name`` under ``instance_id``, giving up after ``timeout`` s.

        Returns REFUSED_AS_DUPLICATE when the extension refuses because an instance
        with the id is active: older extension builds answer 500 and newer ones 409,
        both saying the instance "already exists".

        Raises
        ------
        DurableUnavailable
            The request was never sent: the connection could not be opened.
        StartOutcomeUnknown
            The request may have been sent and its answer was lost.
        DurableFailure
            The Durable API answered with an error other than a duplicate refusal.
        """
        try:
            await self._call(
                "durable.start",
                "starting the instance",
                self.client.start_new(function_name, instance_id, input_),
                min(timeout, self.timeout),
            )
        except DurableUnavailable as unavailable:
            if isinstance(unavailable.__cause__, aiohttp.ClientConnectorError):
                raise  # refused before anything was sent: nothing was started
            raise StartOutcomeUnknown() from unavailable.__cause__
        except DurableFailure as failure:
            if _is_duplicate_refusal(failure.__cause__):
                return StartOutcome.REFUSED_AS_DUPLICATE
            raise
        return StartOutcome.STARTED

    async def end(
        self, instance_id: str, event: Optional[str], reason: str, timeout: float
    ) -> None:
        """Ask the active instance to end: send it ``event`` (the job's ``Stop``), or,
        when ``event`` is None, terminate it with ``reason``. It ends later.

        Raises
        ------
        InstanceEnded
            The instance ended (or was purged) before the request reached it: the SDK
            reports the extension's 410 (404) as a failure, so the status decides.
        DurableFailure, DurableUnavailable
            The request failed while the instance is still active.
        """
        try:
            if event is not None:
                await self._call(
                    "durable.raise_event",
                    f"sending {event} to the existing instance",
                    self.client.raise_event(instance_id, event, None),
                    min(timeout, self.timeout),
                )
            else:
                await self._call(
                    "durable.terminate",
                    "terminating the existing instance",
                    self.client.terminate(instance_id, reason),
                    min(timeout, self.timeout),
                )
        except DurableFailure as failure:
            status = await self.status(instance_id)
            if status is not None and status.runtime_status not in FINISHED:
                raise
            raise InstanceEnded(status, failure) from failure

    @staticmethod
    async def _call(span: str, stage: str, call: Any, timeout: float) -> Any:
        """Await ``call`` within ``timeout`` as span ``span``; sort its failures."""
        try:
            with telemetry.step(span):
                return await asyncio.wait_for(call, timeout)
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as error:
            raise DurableUnavailable(stage) from error
        except Exception as error:  # the SDK raises bare Exception for every failure
            raise DurableFailure(stage) from error


def _is_duplicate_refusal(error: Optional[BaseException]) -> bool:
    """Whether the SDK's exception carries the extension's "already exists" refusal.

    For answers other than 400 the SDK raises ``Exception(body)`` with the decoded
    response body: ``{"Message": ..., "ExceptionMessage": ...}`` or ``{"Message": ...}``.
    """
    if error is None or not error.args:
        return False
    body = error.args[0]
    if isinstance(body, dict):
        text = " ".join(str(body.get(key, "")) for key in ("Message", "ExceptionMessage"))
    else:
        text = str(body)
    return "already exists" in text
