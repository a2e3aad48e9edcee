"""The Durable extension's HTTP management API, through a client the app owns.

The ``durableClient`` binding hands the function a JSON document (:class:`Binding`)
with the task hub's name, the loopback ``rpcBaseUrl`` the extension serves its
management API on, and the management URL templates it gives callers. The app calls
that API itself, on an aiohttp session of its composition root
(:mod:`durable_singleton._root`), and maps every answer **by its status code** to
what the starter acts on:

=================================  ===================================================
call                               answers and what they mean
=================================  ===================================================
``GET instances/{id}``             200 or 202 with a status: the instance. 404 with no
                                   status: no instance has the id. 400 or 500 *with* a
                                   status: a Failed (or Terminated) instance, as some
                                   builds answer it. Anything else, a 400 or 500
                                   without a status included: :class:`DurableFailure`.
``POST orchestrators/{fn}/{id}``   202: started. 409: refused, an instance is active
                                   (newest builds). 500: refused *or* failed (older
                                   builds answer a refusal with 500): the caller reads
                                   the status to tell which. Anything else:
                                   :class:`DurableFailure`.
``POST instances/{id}/raiseEvent`` 202: sent. 410: the instance has ended; 404: no
``POST instances/{id}/terminate``  such instance: :class:`InstanceEnded`. Anything
                                   else: :class:`DurableFailure`.
``GET instances?top=&runtimeStatus=`` 200: a page of statuses, the next page's token in
                                   header ``x-ms-continuation-token`` (sent back in the
                                   same header; absent or empty on the last page).
``DELETE instances/{id}``          200 ``{"instancesDeleted": n}``: purged. 404: no such
                                   instance. Anything else (newer builds refuse to purge
                                   an instance that has not finished): not purged.
=================================  ===================================================

A connection that could not be opened is :class:`DurableUnavailable` (nothing was
sent); a connection lost, or an answer that did not come in time, after a start was
sent is :class:`StartOutcomeUnknown` (the extension carries out a start whose caller
went away). Every call is bounded in time. No answer is ever told apart by its text.

The Durable SDK stays for what it is made for: the orchestrator's replay engine, and
the runtime status enum used here. A status is read into :class:`InstanceStatus`, which
parses only what the app reads (the SDK's model parses every timestamp with dateutil,
a third of a conflict answer's CPU).
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import json
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import aiohttp
from azure.durable_functions import OrchestrationRuntimeStatus

from . import _telemetry as telemetry
from ._errors import NotStarted, OutcomeUnknown
from ._lock import Fenced
from ._policy import FINISHED, is_stuck
from ._waiting import utc_now

#: The placeholder the binding's management URL templates hold in place of an id.
_ID_PLACEHOLDER = "INSTANCEID"


@dataclass(frozen=True)
class InstanceStatus:
    """An instance's status as the Durable API answered it: the members the app decides
    on, parsed, and the document as it came (for the answers that repeat it)."""

    name: Optional[str]
    runtime_status: Optional[OrchestrationRuntimeStatus]
    created_time: Optional[datetime.datetime]
    document: Mapping[str, Any]
    #: When the app read it, and the app's stuck threshold (seconds Pending) then; None
    #: for a status not read from the Durable API.
    read_at: Optional[datetime.datetime] = None
    stuck_after: Optional[float] = None

    @classmethod
    def from_json(
        cls,
        document: Mapping[str, Any],
        read_at: Optional[datetime.datetime] = None,
        stuck_after: Optional[float] = None,
    ) -> "InstanceStatus":
        """Read a status document read at ``read_at``, judged stuck after ``stuck_after`` seconds
        Pending; ValueError for a runtime status or a time the app cannot read."""
        status = document.get("runtimeStatus")
        created = document.get("createdTime")
        return cls(
            name=document.get("name"),
            runtime_status=OrchestrationRuntimeStatus(status) if status else None,
            created_time=_utc(datetime.datetime.fromisoformat(created)) if created else None,
            document=dict(document),
            read_at=read_at,
            stuck_after=stuck_after,
        )

    @property
    def pending_seconds(self) -> Optional[float]:
        """How long it had been Pending when read (since it was created); None when it
        is not Pending, or the time is not known."""
        if self.runtime_status is not OrchestrationRuntimeStatus.Pending:
            return None
        if self.created_time is None or self.read_at is None:
            return None
        return max((self.read_at - self.created_time).total_seconds(), 0.0)

    @property
    def stuck(self) -> bool:
        """Whether it had been Pending for longer than the app's threshold when read."""
        return is_stuck(self.pending_seconds, self.stuck_after)

    @property
    def custom_status(self) -> Any:
        """The instance's custom status (the job's progress), None when it set none."""
        return self.document.get("customStatus")

    def to_json(self) -> Dict[str, Any]:
        """The status document, as the Durable API sent it."""
        return dict(self.document)


def _utc(moment: datetime.datetime) -> datetime.datetime:
    """A time without a zone is UTC, as the extension writes them."""
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


class DurableUnavailable(NotStarted):
    """The Durable API could not be reached, or did not answer: ``sent`` when the request
    may have reached it (then a ``method`` that changes something may have been carried out).
    For a start, raised only when the request is known not to have been sent."""

    def __init__(self, stage: str, sent: bool = False, method: str = "GET"):
        super().__init__(stage)
        self.stage = stage
        self.sent = sent
        self.method = method

    @property
    def may_have_acted(self) -> bool:
        """Whether a request that changes something may have been carried out."""
        return self.sent and self.method != "GET"


class StopOutcomeUnknown(OutcomeUnknown):
    """A Stop or terminate was sent to the instance, but its answer was lost: it may have
    been carried out (the instance may have the Stop, or end terminated)."""

    def __init__(self, instance_id: str):
        super().__init__(instance_id)
        self.instance_id = instance_id


def may_still_land(error: BaseException) -> bool:
    """Whether ``error`` ended a call to the Durable API that changes something (a
    terminate, a Stop) and may still be carried out: the request may have reached the API
    and its answer was lost. A lease it was sent under is then kept until it runs out
    (:meth:`~durable_singleton._lock.HeldLock.abandon`), never released at once."""
    if isinstance(error, StopOutcomeUnknown):
        return True
    return isinstance(error, DurableUnavailable) and error.may_have_acted


class StartOutcomeUnknown(OutcomeUnknown):
    """A start request was sent but its answer was lost: the extension carries out a start
    whose caller went away, so the instance may exist now or a little later."""

    def __init__(self, instance_id: str = ""):
        super().__init__(instance_id)
        self.instance_id = instance_id


class DurableFailure(OutcomeUnknown):
    """The Durable API answered with something the app did not expect; ``stage`` says what
    the starter was doing, in words for the problem detail."""

    def __init__(self, stage: str):
        super().__init__(stage)
        self.stage = stage


class InstanceEnded(Exception):
    """A Stop or terminate found the instance already ended: ``status`` is what it
    ended as, or None when no instance has the id (purged); ``failure`` is how the
    request was answered."""

    def __init__(self, status: Optional[InstanceStatus], failure: DurableFailure):
        super().__init__(failure.stage)
        self.status = status
        self.failure = failure


#: The header the Durable API pages its instance query with, both ways.
_CONTINUATION = "x-ms-continuation-token"


@dataclass(frozen=True)
class InstancePage:
    """One page of an instance query, and the token of the next (None: the last)."""

    statuses: List[InstanceStatus]
    continuation: Optional[str]


class StartOutcome(enum.Enum):
    """How a start request to the Durable API ended."""

    STARTED = "started"
    #: 409: refused because an instance with the id is active.
    REFUSED = "refused"
    #: 500: refused as a duplicate (older builds) or failed; the status tells which.
    REFUSED_OR_FAILED = "refused-or-failed"


@dataclass(frozen=True)
class Binding:
    """The ``durableClient`` binding's document, the members the app uses."""

    task_hub: str
    rpc_base_url: str
    management_urls: Mapping[str, str]

    @classmethod
    def parse(cls, document: str) -> "Binding":
        """Read the binding's JSON ``document`` as the host hands it to the function;
        ValueError when it is not the binding's document (a host or wiring fault)."""
        value = json.loads(document)
        urls = value.get("managementUrls") if isinstance(value, dict) else None
        if not (
            isinstance(value, dict)
            and isinstance(value.get("taskHubName"), str)
            and isinstance(value.get("rpcBaseUrl"), str)
            and isinstance(urls, dict)
            and isinstance(urls.get("statusQueryGetUri"), str)
        ):
            raise ValueError("not a durableClient binding")
        base = value["rpcBaseUrl"]
        return cls(
            task_hub=value["taskHubName"],
            rpc_base_url=base if base.endswith("/") else base + "/",
            management_urls={k: v for k, v in urls.items() if isinstance(v, str)},
        )

    def links(self, instance_id: str, origin_of: Optional[str] = None) -> Dict[str, str]:
        """The extension's management URLs for ``instance_id``; on the origin of the URL
        ``origin_of`` when given (the caller's view of the host), else the host's own."""
        origin = _origin(origin_of) if origin_of else None
        links = {}
        for name, template in self.management_urls.items():
            url = template.replace(_ID_PLACEHOLDER, instance_id)
            own = _origin(url)
            if origin is not None and own:  # URLs only: the ``id`` member is the id
                url = origin + url[len(own) :]
            links[name] = url
        return links


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of an absolute URL; "" for anything else."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", "")) if parts.netloc else ""


class DurableClient:
    """The management calls the app makes, for one binding, on the root's session."""

    def __init__(
        self,
        binding: Binding,
        session: aiohttp.ClientSession,
        timeout: float,
        stuck_after: Optional[float] = None,
    ):
        """Call the API ``binding`` names through ``session``; every call ends within
        ``timeout`` seconds unless given less. Statuses read are judged stuck after
        ``stuck_after`` seconds Pending (never, when None)."""
        self.binding = binding
        self.timeout = timeout
        self.stuck_after = stuck_after
        self._session = session
        self._base = binding.rpc_base_url

    @property
    def task_hub(self) -> str:
        """The task hub the binding's instances live in."""
        return self.binding.task_hub

    async def status(self, instance_id: str) -> Optional[InstanceStatus]:
        """The instance's status, or None when no instance has the id. Raises
        DurableUnavailable or DurableFailure when the API could not be reached or did not
        answer with a status."""
        stage = "reading the instance status"
        url = f"{self._base}instances/{instance_id}?showInput=false"
        with telemetry.step("durable.status"):
            code, body, _ = await self._send("GET", url, None, self.timeout, stage)
        document = body if isinstance(body, dict) and body.get("runtimeStatus") else None
        if code in (200, 202, 400, 500) and document is not None:
            try:
                return self._read(document)
            except (TypeError, ValueError):  # a status the app cannot read
                raise DurableFailure(stage) from None
        if code == 404 and document is None:
            return None
        raise DurableFailure(stage)

    def _read(self, document: Mapping[str, Any]) -> InstanceStatus:
        """A status document the API sent, as read now."""
        now = utc_now()
        return InstanceStatus.from_json(document, now, self.stuck_after)

    async def start(
        self, function_name: str, instance_id: str, input_: Any, limit: Fenced
    ) -> StartOutcome:
        """Start ``function_name`` under ``instance_id`` within ``limit`` (and the Durable
        timeout). Raises DurableUnavailable when nothing was sent, StartOutcomeUnknown when the
        answer was lost, DurableFailure for any answer but 202, 409 and 500."""
        stage = "starting the instance"
        url = f"{self._base}orchestrators/{function_name}/{instance_id}"
        # The extension reads the input as a JSON string holding the input's JSON,
        # as the Durable SDK sends it.
        payload = None if input_ is None else json.dumps(input_)
        with telemetry.step("durable.start"):
            try:
                code, _, _ = await self._send("POST", url, payload, self._within(limit), stage)
            except DurableUnavailable as unavailable:
                if not unavailable.sent:
                    raise  # refused before anything was sent: nothing was started
                raise StartOutcomeUnknown(instance_id) from unavailable.__cause__
        outcomes = {
            202: StartOutcome.STARTED,
            409: StartOutcome.REFUSED,
            500: StartOutcome.REFUSED_OR_FAILED,
        }
        if code not in outcomes:
            raise DurableFailure(stage)
        return outcomes[code]

    async def terminate(self, instance_id: str, reason: str, limit: Fenced) -> None:
        """Terminate the active instance with ``reason`` within ``limit``; it ends a little later.
        Raises InstanceEnded on a 410 (it has ended) or a 404 (no such instance)."""
        stage = "terminating the existing instance"
        url = f"{self._base}instances/{instance_id}/terminate?reason={quote(reason)}"
        with telemetry.step("durable.terminate"):
            code, _, _ = await self._send("POST", url, None, self._within(limit), stage)
        await self._accepted(instance_id, code, stage)

    async def raise_event(
        self, instance_id: str, event: str, data: Any, limit: Optional[Fenced]
    ) -> None:
        """Send ``event`` with ``data`` (any JSON value) to the active instance within ``limit``
        (None only for an event meant for whichever instance is active: a Stop asked with
        ``mode=stop``). Raises what :meth:`terminate` raises."""
        stage = f"sending {event} to the existing instance"
        url = f"{self._base}instances/{instance_id}/raiseEvent/{event}"
        with telemetry.step("durable.raise_event"):
            # The request body is the event's data as JSON.
            code, _, _ = await self._send("POST", url, data, self._within(limit), stage)
        await self._accepted(instance_id, code, stage)

    async def list_page(
        self,
        runtime_statuses: Iterable[OrchestrationRuntimeStatus] = (),
        top: int = 100,
        continuation: Optional[str] = None,
        created_to: Optional[datetime.datetime] = None,
    ) -> "InstancePage":
        """One page of the task hub's instances (of every orchestrator) in the API's order, and
        the next page's token (None on the last); ``runtime_statuses`` filters (none: all),
        ``created_to`` keeps those created before then."""
        stage = "listing the instances"
        query: Dict[str, Any] = {"top": top, "showInput": "false"}
        statuses = [s.value for s in runtime_statuses]
        if statuses:
            query["runtimeStatus"] = ",".join(statuses)
        if created_to is not None:
            query["createdTimeTo"] = created_to.astimezone(datetime.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
        url = f"{self._base}instances?{urlencode(query)}"
        headers = {_CONTINUATION: continuation} if continuation else None
        with telemetry.step("durable.list"):
            code, body, answered = await self._send("GET", url, None, self.timeout, stage, headers)
        if code != 200 or not isinstance(body, list):
            raise DurableFailure(stage)
        try:
            statuses_read = [self._read(item) for item in body if isinstance(item, dict)]
        except (TypeError, ValueError):
            raise DurableFailure(stage) from None
        following = answered.get(_CONTINUATION) or None
        # Some builds send the token of an ended query as the text "null".
        return InstancePage(statuses_read, None if following == "null" else following)

    async def purge(self, instance_id: str, limit: Fenced) -> bool:
        """Purge the instance within ``limit``: True when purged, False when no instance has the
        id. The caller checks it has finished (older builds purge whatever it is)."""
        stage = "purging the instance"
        url = f"{self._base}instances/{instance_id}"
        with telemetry.step("durable.purge"):
            code, body, _ = await self._send("DELETE", url, None, self._within(limit), stage)
        if code == 404:
            return False
        if (
            code == 200
            and isinstance(body, dict)
            and isinstance(body.get("instancesDeleted"), int)
        ):
            return bool(body["instancesDeleted"])
        raise DurableFailure(stage)

    async def _accepted(self, instance_id: str, code: int, stage: str) -> None:
        """Return on 202; otherwise raise what the code means for a management call."""
        if code == 202:
            return
        failure = DurableFailure(stage)
        if code == 410:
            status = await self.status(instance_id)
            if status is None or status.runtime_status in FINISHED:
                raise InstanceEnded(status, failure)
        elif code == 404:
            raise InstanceEnded(None, failure)
        raise failure

    def _within(self, limit: Optional[Fenced]) -> float:
        """The time limit of a call: the Durable timeout, or less when the lease it is
        made under is proven for less."""
        return self.timeout if limit is None else min(limit.seconds, self.timeout)

    async def _send(
        self,
        method: str,
        url: str,
        payload: Any,
        timeout: float,
        stage: str,
        headers: Optional[Mapping[str, str]] = None,
    ) -> Tuple[int, Any, Mapping[str, str]]:
        """Send one request with ``headers`` within ``timeout``: its status code, decoded
        body (None when empty) and headers."""
        try:
            async with asyncio.timeout(timeout):
                async with self._session.request(
                    method, url, json=payload, headers=headers
                ) as response:
                    raw = await response.read()
                    body = json.loads(raw) if raw.strip() else None
                    return response.status, body, response.headers
        except (aiohttp.ClientConnectionError, TimeoutError) as error:
            # Only a connection that could not be opened is known not to have carried it.
            sent = not isinstance(error, aiohttp.ClientConnectorError)
            raise DurableUnavailable(stage, sent, method) from error
        except (aiohttp.ClientError, ValueError) as error:  # not HTTP, or not JSON
            raise DurableFailure(stage) from error


def new_session() -> aiohttp.ClientSession:
    """The HTTP session for the Durable API, one per composition root: no total time limit
    (each call is bounded by the client), and a failed request fails only itself."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=100, enable_cleanup_closed=True),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
    )
