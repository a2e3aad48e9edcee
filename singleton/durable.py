"""The Durable Functions API as the starter uses it, through the SDK's own client.

The SDK reports every failure as a plain ``Exception`` (or aiohttp's errors); this
module sorts them into what the starter answers: unreachable (503), unexpected error
(502), and the extension's refusal to start over an active instance (409).
"""
from __future__ import annotations

import asyncio
import enum
import functools
import json
from typing import Any, Dict, Optional

import aiohttp
import azure.durable_functions as df
import azure.functions as func
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus

#: Members of a status the 409 and 200 answers repeat for the caller.
_STATUS_MEMBERS = ("instanceId", "name", "runtimeStatus", "createdTime", "lastUpdatedTime")


class DurableUnavailable(Exception):
    """The Durable API could not be reached (connection refused, reset or timed out)."""


class DurableFailure(Exception):
    """The Durable API answered with something the app did not expect.

    ``stage`` says what the starter was doing, in words for the problem detail.
    """

    def __init__(self, stage: str):
        super().__init__(stage)
        self.stage = stage


class StartOutcome(enum.Enum):
    """How a start request to the Durable API ended."""

    STARTED = "started"
    REFUSED_AS_DUPLICATE = "duplicate"


class DurableApi:
    """The calls the starter makes, for one invocation's ``durableClient`` binding."""

    def __init__(self, starter: str):
        """Wrap the binding's JSON ``starter`` in the SDK's client."""
        self.client = df.DurableOrchestrationClient(starter)
        self._starter = starter

    @functools.cached_property
    def task_hub(self) -> str:
        """The task hub's name, from the binding (the SDK client does not expose it).

        Read only when the lock needs it: the conflict path never does.
        """
        return json.loads(self._starter)["taskHubName"]

    async def status(self, instance_id: str) -> Optional[DurableOrchestrationStatus]:
        """Return the instance's status, or None when no instance has the id.

        The SDK never returns None itself: for an unknown id it returns a falsy status
        whose ``runtime_status`` is None.
        """
        status = await self._call("reading the instance status",
                                  self.client.get_status(instance_id))
        if not status or status.runtime_status is None:
            return None
        return status

    async def start(self, function_name: str, instance_id: str, input_: Any) -> StartOutcome:
        """Start ``function_name`` under ``instance_id``.

        Returns REFUSED_AS_DUPLICATE when the extension refuses because an instance
        with the id is active: older extension builds answer 500 and newer ones 409,
        both saying the instance "already exists".
        """
        try:
            await self._call("starting the instance",
                             self.client.start_new(function_name, instance_id, input_))
        except DurableFailure as failure:
            if _is_duplicate_refusal(failure.__cause__):
                return StartOutcome.REFUSED_AS_DUPLICATE
            raise
        return StartOutcome.STARTED

    async def terminate(self, instance_id: str, reason: str) -> None:
        """Ask the runtime to terminate the instance; termination finishes later."""
        await self._call("terminating the existing instance",
                         self.client.terminate(instance_id, reason))

    def links(self, req: func.HttpRequest, instance_id: str) -> Dict[str, str]:
        """Return the instance's management URLs, on the origin the caller used."""
        return self.client.get_client_response_links(req, instance_id)

    def started_response(self, req: func.HttpRequest, instance_id: str) -> func.HttpResponse:
        """Return the SDK's 202 check-status response for a started instance."""
        return self.client.create_check_status_response(req, instance_id)

    def describe(self, req: func.HttpRequest, instance_id: str,
                 status: DurableOrchestrationStatus) -> Dict[str, Any]:
        """Describe an existing instance: its status members and management URLs."""
        document = status.to_json()
        described = {key: document[key] for key in _STATUS_MEMBERS if key in document}
        described["instanceId"] = instance_id
        described.update(self.links(req, instance_id))
        return described

    @staticmethod
    async def _call(stage: str, call: Any) -> Any:
        try:
            return await call
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
