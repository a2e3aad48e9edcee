"""What the Durable extension's HTTP management API answers, row by row, with the source
of each behaviour: the table the Durable double (tests/support/durable_double.py) is
checked against by tests/test_durable_conformance.py.

Sources, in Azure/azure-functions-durable-extension unless named otherwise:
- ``HttpApiHandler.cs``: every handler named in a row, ``ConvertFrom`` (the status
  document: member names, ``CreatedTime.ToString("s") + "Z"``) and
  ``CreateCheckStatusResponseMessage`` (the start's answer);
- ``StatusResponsePayload.cs``: ``[DataMember]`` names, ``input`` kept as null when not
  shown, ``historyEvents`` left out unless asked for;
- DurableTask.AzureStorage (Azure/durabletask) ``AzureTableTrackingStore``: each
  execution's ``ExecutionStarted`` stamps the row's ``CreatedTime``;
- shared/durable-http-api.md: the duplicate refusal of the newest builds (409).

A row is a request against an instance ``x`` in a given state, and what the answer must
hold: its status code, headers (an exact value, a pattern, or :data:`ABSENT`), and body
(:data:`EMPTY`, a JSON array, or the members an object must have, with values where they
are fixed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Pattern, Tuple, Union

#: A header the answer must not carry; a body that must be empty; a JSON array body.
ABSENT = "<absent>"
EMPTY = "<empty>"
ARRAY = "<array>"
#: A time as the extension writes it: UTC, to the whole second, ``Z``.
WHOLE_SECOND = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
#: The members of a status document (StatusResponsePayload, without historyEvents).
STATUS_MEMBERS = (
    "name",
    "instanceId",
    "runtimeStatus",
    "input",
    "customStatus",
    "output",
    "createdTime",
    "lastUpdatedTime",
)
#: The members of the start's answer (CreateCheckStatusResponseMessage).
START_MEMBERS = (
    "id",
    "statusQueryGetUri",
    "sendEventPostUri",
    "terminatePostUri",
    "purgeHistoryDeleteUri",
    "restartPostUri",
    "suspendPostUri",
    "resumePostUri",
)

Expected = Union[str, Pattern[str]]


@dataclass(frozen=True)
class Row:
    """One behaviour of the API: ``method path`` (relative to ``rpcBaseUrl``) sent while
    instance ``x`` is ``given`` (None: no such instance)."""

    behaviour: str
    source: str
    method: str
    path: str
    given: Optional[str]
    status: int
    headers: Mapping[str, Expected] = field(default_factory=dict)
    #: EMPTY, ARRAY, or the members the JSON object must have (value None: any value).
    body: Union[str, Mapping[str, Any]] = EMPTY
    request_headers: Mapping[str, str] = field(default_factory=dict)
    request_body: Optional[str] = None
    #: The double's knobs for this row (DurableDouble.reset).
    knobs: Mapping[str, Any] = field(default_factory=dict)
    #: Further instances, Running, beside ``x``.
    also: Tuple[str, ...] = ()


def _status_body(**fixed: Any) -> Dict[str, Any]:
    body: Dict[str, Any] = {name: None for name in STATUS_MEMBERS}
    body.update(createdTime=WHOLE_SECOND, lastUpdatedTime=WHOLE_SECOND, instanceId="x")
    body.update(fixed)
    return body


_STATUS = "HttpApiHandler.HandleGetStatusRequestAsync(instanceId) and ConvertFrom"
_JSON = {"Content-Type": "application/json"}

ROWS: Tuple[Row, ...] = (
    Row(
        "status of an unknown id: 404, empty body",
        _STATUS,
        "GET",
        "instances/x",
        None,
        404,
        {"Location": ABSENT, "Retry-After": ABSENT},
    ),
    *(
        Row(
            f"status of a {state} instance: 202, Location (the request's URL), "
            "Retry-After 5, times to the whole second",
            _STATUS,
            "GET",
            "instances/x",
            state,
            202,
            {
                "Location": re.compile(r"http://127\.0\.0\.1:\d+/durabletask/instances/x"),
                "Retry-After": "5",
            },
            _status_body(runtimeStatus=state),
        )
        for state in ("Pending", "Running", "ContinuedAsNew", "Suspended")
    ),
    *(
        Row(
            f"status of a {state} instance: 200, no Location, no Retry-After",
            _STATUS,
            "GET",
            "instances/x",
            state,
            200,
            {"Location": ABSENT, "Retry-After": ABSENT},
            _status_body(runtimeStatus=state),
        )
        for state in ("Completed", "Terminated", "Canceled", "Failed")
    ),
    Row(
        "status of a Failed instance with returnInternalServerErrorOnFailure=true: 500",
        _STATUS,
        "GET",
        "instances/x?returnInternalServerErrorOnFailure=true",
        "Failed",
        500,
        {},
        _status_body(runtimeStatus="Failed"),
    ),
    Row(
        "status with showInput=false: the input member is there, null",
        _STATUS + " (showInput; StatusResponsePayload.Input has no EmitDefaultValue=false)",
        "GET",
        "instances/x?showInput=false",
        "Running",
        202,
        {},
        _status_body(input=None),
    ),
    Row(
        "start: 202, the management URLs, Location (the status URL), Retry-After 10",
        "HttpApiHandler.HandleStartOrchestratorRequestAsync and CreateCheckStatusResponseMessage",
        "POST",
        "orchestrators/SingletonOrchestrator/x",
        None,
        202,
        {
            "Location": re.compile(r".*/runtime/webhooks/durabletask/instances/x\?.*"),
            "Retry-After": "10",
        },
        {name: None for name in START_MEMBERS} | {"id": "x"},
        _JSON,
        '"{}"',
    ),
    Row(
        "start without an id: 202, under an id the extension makes (32 hex digits)",
        "HttpApiHandler.HandleStartOrchestratorRequestAsync; DurableClient.StartNewAsync "
        '(Guid.NewGuid().ToString("N"))',
        "POST",
        "orchestrators/SingletonOrchestrator",
        None,
        202,
        {"Retry-After": "10"},
        {name: None for name in START_MEMBERS} | {"id": re.compile(r"[0-9a-f]{32}")},
        _JSON,
        '"{}"',
    ),
    Row(
        "start of an unknown orchestrator: 400 with Message, ExceptionMessage, ExceptionType",
        "HttpApiHandler.HandleRequestAsync (catch ArgumentException: CreateErrorResponse)",
        "POST",
        "orchestrators/NoSuchOrchestrator/x",
        None,
        400,
        {},
        {
            "Message": "One or more of the arguments submitted is incorrect",
            "ExceptionMessage": None,
            "ExceptionType": "System.ArgumentException",
        },
    ),
    Row(
        "start over an active instance (older builds): 500, the exception's message",
        "HttpApiHandler.HandleRequestAsync (catch Exception: CreateErrorResponse)",
        "POST",
        "orchestrators/SingletonOrchestrator/x",
        "Running",
        500,
        {},
        {
            "Message": "Something went wrong while processing your request",
            "ExceptionMessage": "An Orchestration instance with the status Running already "
            "exists.",
            "ExceptionType": "System.InvalidOperationException",
        },
    ),
    Row(
        "start over an active instance (newest builds): 409 with Message",
        "shared/durable-http-api.md, Conflicts",
        "POST",
        "orchestrators/SingletonOrchestrator/x",
        "Running",
        409,
        {},
        {"Message": "An Orchestration instance with the status Running already exists."},
        knobs={"duplicate_answer": "modern"},
    ),
    Row(
        "terminate an active instance: 202, empty body",
        "HttpApiHandler.HandleTerminateInstanceRequestAsync",
        "POST",
        "instances/x/terminate?reason=r",
        "Running",
        202,
    ),
    Row(
        "terminate a finished instance: 410",
        "HttpApiHandler.HandleTerminateInstanceRequestAsync (IsCompletedStatus)",
        "POST",
        "instances/x/terminate?reason=r",
        "Completed",
        410,
    ),
    Row(
        "terminate an unknown id: 404",
        "HttpApiHandler.HandleTerminateInstanceRequestAsync",
        "POST",
        "instances/x/terminate?reason=r",
        None,
        404,
    ),
    Row(
        "raise an event on an active instance: 202",
        "HttpApiHandler.HandleRaiseEventRequestAsync",
        "POST",
        "instances/x/raiseEvent/Ping",
        "Running",
        202,
        request_headers=_JSON,
        request_body="{}",
    ),
    *(
        Row(
            f"raise an event on a {state} instance: 410",
            "HttpApiHandler.HandleRaiseEventRequestAsync",
            "POST",
            "instances/x/raiseEvent/Ping",
            state,
            410,
            request_headers=_JSON,
            request_body="{}",
        )
        for state in ("Completed", "Failed", "Terminated", "Canceled")
    ),
    Row(
        "raise an event on an unknown id: 404",
        "HttpApiHandler.HandleRaiseEventRequestAsync",
        "POST",
        "instances/x/raiseEvent/Ping",
        None,
        404,
        request_headers=_JSON,
        request_body="{}",
    ),
    Row(
        "raise an event without a JSON body: 400",
        "HttpApiHandler.HandleRaiseEventRequestAsync (media type application/json only)",
        "POST",
        "instances/x/raiseEvent/Ping",
        "Running",
        400,
        {},
        {"Message": "Only application/json request content is supported"},
        {"Content-Type": "text/plain"},
        "hello",
    ),
    Row(
        "list, last page: 200, a JSON array, x-ms-continuation-token sent empty",
        "HttpApiHandler.HandleGetStatusRequestAsync (list: Headers.Add of a null token)",
        "GET",
        "instances?top=10",
        "Running",
        200,
        {"x-ms-continuation-token": ""},
        ARRAY,
    ),
    Row(
        "list, a page before the last: the next page's token in x-ms-continuation-token",
        "HttpApiHandler.HandleGetStatusRequestAsync (list: ContinuationToken)",
        "GET",
        "instances?top=1",
        "Running",
        200,
        {"x-ms-continuation-token": re.compile(r".+")},
        ARRAY,
        also=("y",),
    ),
    Row(
        "purge a finished instance: 200 with instancesDeleted",
        "HttpApiHandler.HandleDeleteHistoryByIdRequestAsync",
        "DELETE",
        "instances/x",
        "Completed",
        200,
        {},
        {"instancesDeleted": 1},
    ),
    Row(
        "purge an unknown id: 404",
        "HttpApiHandler.HandleDeleteHistoryByIdRequestAsync",
        "DELETE",
        "instances/x",
        None,
        404,
    ),
)
