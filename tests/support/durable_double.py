"""A loopback HTTP double of the Durable extension's API, as the Python SDK calls it.

It answers the way the real extension does (its ``HttpApiHandler``, in
Azure/azure-functions-durable-extension, with DurableTask.AzureStorage underneath):
- ``GET instances/{id}``: 404 with an empty body for an unknown id; 202 for an active
  instance; 200 for a finished one.
- ``POST orchestrators/{fn}/{id}``: 400 for an unknown orchestrator; a duplicate
  refusal for an active instance (500 ``{Message, ExceptionMessage, ExceptionType}``
  like older builds, or 409 ``{Message}`` like the newest); otherwise 202. The
  refusal is not atomic, as on the Azure Storage provider: the handler reads the
  instance, waits ``start_check_delay``, then writes, so racing starts all get 202;
  all but the first are recorded in ``dropped_starts`` (the runtime later drops
  their start messages: one instance runs, every caller was told "started").
- ``POST instances/{id}/terminate``: 202 and the instance turns Terminated after
  ``terminate_delay`` (never, when None); 410 when finished; 404 when unknown.
- ``POST instances/{id}/raiseEvent/{name}``: 202, 410 or 404.
- ``GET instances?top=&runtimeStatus=``: a page of statuses in id order (as the Azure
  Storage provider's table gives them), the next page's token in
  ``x-ms-continuation-token``.
- ``DELETE instances/{id}``: 200 ``{"instancesDeleted": 1}``, 404 when unknown; an
  instance that has not finished is refused (500, as builds with
  azure-functions-durable-extension#3311) or, with ``purge_refuses_active=False``, purged
  all the same (older builds).

An instance plays SingletonOrchestrator's part in run once more, by the job's own rules
(``durable_singleton._next_run``): when a run ends it takes its next run from the id's
channel in the app's storage with the job's own activity code
(``durable_singleton._next_run_store.handle``, on the storage :meth:`use_storage` names)
and continues as new with it; a debounced run's instance, when its timer fires, asks the
channel whether it is due. A started instance is Pending, with no custom status, until
its first episode (``pickup_delay`` after its creation; never, for a stuck one): then it
is Running and shows its run. ``runs`` records each run as it begins. A Stop is taken
``event_delay`` after it arrives (as the Azure Storage backend picks up new messages
after its control-queue poll). :meth:`begin_switch` holds open the work item in which a
run ends and its next run begins: the race a Stop must answer truthfully.

It runs its own event loop in a thread so that tests, and other processes, can call
it whatever loop they run on. ``latency`` delays every answer, like a storage round
trip on the real host.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Deque, Dict, List, Optional, Set, Tuple, Union

from aiohttp import web
from azure.durable_functions import OrchestrationRuntimeStatus as Status
from azure.storage.blob.aio import BlobServiceClient

from durable_singleton._next_run import NEXT_RUN_RETRY, RunState, parse_time, stops
from durable_singleton._next_run_store import NextRunStore
from durable_singleton._next_run_store import handle as next_run
from durable_singleton._slots import QueueStore, queue_store
from tests.support.loop_thread import LoopThread

# How the extension treats each runtime status, by the SDK's names.
ACTIVE = {
    s.value for s in (Status.Pending, Status.Running, Status.ContinuedAsNew, Status.Suspended)
}
FINISHED = {s.value for s in Status} - ACTIVE

#: The Message of the extension's answer to an exception it did not expect
#: (HttpApiHandler.HandleRequestAsync's catch-all, an HttpError with the exception).
_SOMETHING_WENT_WRONG = "Something went wrong while processing your request"

#: The Durable extension's system key in the management URLs the double hands out.
#: Tests check that it never reaches a log line.
SYSTEM_KEY = "double-system-key-4f1d"


@dataclass
class Instance:
    """One orchestration instance as the double stores it."""

    name: str
    status: str
    input: Any = None
    output: Any = None
    custom_status: Any = None
    #: Kept to the tick, as the provider stores them; written to the second.
    created: datetime.datetime = field(default_factory=lambda: _now())
    updated: datetime.datetime = field(default_factory=lambda: _now())
    run: Optional[RunState] = None
    #: The data of every Stop this execution took.
    stops: List[Any] = field(default_factory=list)
    #: Set while a work item that ends this run and begins its next one is held open
    #: (:meth:`DurableDouble.begin_switch`): the messages that arrived meanwhile (events,
    #: terminations), in order, each to be handed to the next execution; and the run
    #: the work item begins.
    held: Optional[List[Callable[["Instance"], None]]] = None
    switching_to: Optional[Dict[str, Any]] = None
    #: Whether a terminate arriving while the switch is held ends this execution (the
    #: run taken never begins) instead of the next one.
    terminated_in_switch: bool = False
    #: Set once the run's end is under way: an execution ends once (its completion and
    #: a Stop may both come due).
    ending: bool = False

    def run_stops_for(self, run: str) -> bool:
        """Whether a Stop this execution took is meant for run ``run`` (the job carries
        it to the run it begins)."""
        return any(stops(data, run) for data in self.stops)

    def body(self, instance_id: str) -> Dict[str, Any]:
        """The status document the extension returns."""
        return {
            "name": self.name,
            "instanceId": instance_id,
            "runtimeStatus": self.status,
            "input": self.input,
            "customStatus": self.custom_status,
            "output": self.output,
            "createdTime": _format(self.created),
            "lastUpdatedTime": _format(self.updated),
        }


@dataclass
class Fault:
    """The next ``times`` calls of one kind answer ``status`` with ``body``."""

    status: int
    body: Any
    times: int


@dataclass
class DurableDouble:
    """The double's behaviour knobs and what it has seen."""

    orchestrators: Set[str] = field(default_factory=lambda: {"SingletonOrchestrator"})
    latency: float = 0.0
    start_check_delay: float = 0.0
    duplicate_answer: str = "legacy"  # "legacy" (500), "modern" (409) or "replace"
    terminate_delay: Optional[float] = 0.05
    complete_after: Optional[float] = None  # a started instance completes after this
    stop_delay: Optional[float] = None  # completes this long after Stop (None: ignores it)
    #: How long after an event arrives the instance takes it.
    event_delay: float = 0.0
    #: How long after its creation a started instance runs its first episode: until then
    #: it is Pending with no custom status ("scheduled but not yet started",
    #: OrchestrationRuntimeStatus; the custom status is only what the orchestrator's code
    #: sets, durable-functions-custom-orchestration-status); then Running, showing its run.
    #: 0: before the start is answered; None: never (a stuck instance).
    pickup_delay: Optional[float] = 0.0
    #: Whether terminate ends a Pending instance: DurableTask.AzureStorage does since
    #: Azure/durabletask#1256; before it, the terminate is accepted and nothing happens.
    terminate_ends_pending: bool = True
    #: Whether purging an instance that has not finished is refused (#3311) or done.
    purge_refuses_active: bool = True
    purge_delay: float = 0.0  # a purge is carried out this long after it arrives
    #: Awaited with the id before a status read is answered (once, then cleared): the
    #: read is held open until it returns, as a caller paused mid-request sees it.
    hold_status: Optional[Callable[[str], Awaitable[None]]] = None
    #: The next event raised to an instance whose run waits (debounced) arrives just after
    #: the run's due time (once, then cleared): its timer fires first and the job asks its
    #: channel to begin the run (op ``begin``), so an instance whose waiting run was dropped
    #: has completed, and the event is answered 410 as for any finished instance.
    due_before_event: bool = False

    def __post_init__(self) -> None:
        self._forget()
        #: Where the job's activity keeps next-run channels (:meth:`use_storage`).
        self.channels: Optional[NextRunStore] = None
        self.queues: Optional[QueueStore] = None
        self._blob_service: Optional[BlobServiceClient] = None
        self._runs_made = 0
        self._serving = LoopThread("durable-double")
        self._runner: Optional[web.AppRunner] = None
        self.port = 0

    def _forget(self) -> None:
        """Start every record empty: the instances, the calls and the logs below (not the
        knobs, not the storage in use)."""
        self.instances: Dict[str, Instance] = {}
        self.calls: collections.Counter = collections.Counter()
        self.accepted_starts: List[Tuple[str, str]] = []
        self.refused_starts: List[Tuple[str, str]] = []
        self.dropped_starts: List[Tuple[str, str]] = []
        #: (instance id, input) of every execution a start created: its generations.
        self.created: List[Tuple[str, Any]] = []
        self.terminations: List[Tuple[str, str]] = []
        self.events: List[Tuple[str, str, Any]] = []
        #: (instance id, run id, input, when it began) of every run, as it begins.
        self.runs: List[Tuple[str, str, Any, datetime.datetime]] = []
        #: (monotonic time, instance id, active): every instance's becoming active (its
        #: creation) and its end, in order: which instances were active at any moment.
        self.activity: List[Tuple[float, str, bool]] = []
        #: Ids purged, in order.
        self.purged: List[str] = []
        self.faults: Dict[str, Deque[Fault]] = collections.defaultdict(collections.deque)

    # -- control from tests ------------------------------------------------------------

    @property
    def rpc_base_url(self) -> str:
        """The ``rpcBaseUrl`` of the starter binding pointing at this double."""
        return f"http://127.0.0.1:{self.port}/durabletask/"

    def starter(self, task_hub: str = "TestHubName", origin: str = "http://localhost:7071") -> str:
        """The ``durableClient`` binding JSON the host would pass, aimed at this double."""
        return starter_binding(self.rpc_base_url, task_hub, origin)

    def reset(self, **knobs: Any) -> None:
        """Forget every instance and call, and set the knobs given (others to defaults)."""
        for knob in dataclasses.fields(self):  # the knobs are the dataclass's fields
            if knob.name in knobs:
                value = knobs.pop(knob.name)
            elif knob.default_factory is not dataclasses.MISSING:
                value = knob.default_factory()
            else:
                value = knob.default
            setattr(self, knob.name, value)
        if knobs:
            raise TypeError(f"unknown knobs: {sorted(knobs)}")
        self._forget()

    def put(
        self,
        instance_id: str,
        status: str,
        name: str = "SingletonOrchestrator",
        created: Optional[datetime.datetime] = None,
        custom_status: Any = None,
    ) -> None:
        """Create or overwrite an instance with ``status``, created now or at ``created``
        (and last updated then)."""
        when = _now() if created is None else created.astimezone(datetime.timezone.utc)
        self.instances[instance_id] = Instance(
            name, status, created=when, updated=when, custom_status=custom_status
        )

    def set_status(self, instance_id: str, status: str) -> None:
        """Move an existing instance to ``status``."""
        instance = self.instances[instance_id]
        if instance.status in ACTIVE and status not in ACTIVE:
            self.activity.append((time.monotonic(), instance_id, False))
        instance.status = status
        instance.updated = _now()

    def end_run(self, instance_id: str) -> None:
        """The active instance's run ends now, as the job's does: it takes its next run
        (SingletonNextRun ``take``: from its channel, or, for a slot of a key with a
        limit, from the key's queue) and continues as new with it, or completes."""
        instance = self.instances[instance_id]
        assert instance.status in ACTIVE
        self._serving.run(self._run_ended(instance_id, instance), timeout=30)

    def continue_as_new(self, instance_id: str, input_: Any = None) -> None:
        """The active instance continues as new (a repeating job's next pass): a new
        execution of the same instance, its ``createdTime`` stamped now, as the provider
        stamps each execution's."""
        instance = self.instances[instance_id]
        assert instance.status in ACTIVE
        self.instances[instance_id] = Instance(
            instance.name, "Running", input=input_, custom_status=instance.custom_status
        )

    def use_storage(self, connection_string: str, container: str) -> None:
        """Keep next-run channels (and the queues of keys with a limit) where the app
        under test does: the storage account of ``connection_string``, the lock
        container ``container``."""
        self._serving.run(self._use_storage(connection_string, container))

    async def _use_storage(self, connection_string: str, container: str) -> None:
        if self._blob_service is None:
            self._blob_service = BlobServiceClient.from_connection_string(connection_string)
        locks = self._blob_service.get_container_client(container)
        self.channels = NextRunStore(locks, 5.0)
        self.queues = queue_store(locks, 5.0)

    def begin_switch(self, instance_id: str, terminated_first: bool = False) -> None:
        """The instance's run ends in a work item that takes its next run from the
        channel and begins it (continue-as-new), and that work item is held open until
        :meth:`commit_switch`.

        Meanwhile its status is the one last committed (the ended run), and an event
        raised to it waits: the extension raises events to the instance, not to an
        execution ("External events are not supposed to target any particular execution
        ID", DurableClient.RaiseEventInternalAsync), so one that arrives while the work
        item commits is taken by the next execution.

        ``terminated_first``: the take (an activity) has completed, but the episode that
        continues as new has not run, and a terminate arriving now is in its batch: the
        instance ends Terminated with the ended run's status and the run taken never
        begins. Sources: the extension's orchestration middleware ("A termination is
        applied by the DTFx orchestration executor itself, which completes the instance
        without ever running the orchestrator shim to completion",
        azure-functions-durable-extension, with its issue #286), and DurableTask.Core's
        TaskOrchestrationContext.HandleExecutionTerminatedEvent (completes it Terminated).
        """
        self._serving.run(self._begin_switch(instance_id, terminated_first))

    async def _begin_switch(self, instance_id: str, terminated_first: bool) -> None:
        instance = self.instances[instance_id]
        following = await self._take_next(instance_id, instance)
        assert following is not None, "the channel holds no next run to switch to"
        instance.held = []
        instance.switching_to = following
        instance.terminated_in_switch = terminated_first

    def commit_switch(self, instance_id: str) -> None:
        """Commit the work item :meth:`begin_switch` held open: the next run begins, and
        then takes the events raised meanwhile."""
        self._serving.run(self._commit_switch(instance_id))

    async def _commit_switch(self, instance_id: str) -> None:
        instance = self.instances[instance_id]
        held, instance.held = instance.held or [], None
        assert instance.switching_to is not None and instance.run is not None
        successor = self._continue(instance_id, instance, instance.switching_to)
        for message in held:
            message(successor)

    def fail_next(self, kind: str, status: int, body: Any = None, times: int = 1) -> None:
        """Make the next ``times`` calls of ``kind`` (status, start, terminate, raiseEvent)
        answer ``status`` with ``body``."""
        self.faults[kind].append(Fault(status, body, times))

    def active_instances(self) -> List[str]:
        """Ids of the instances that are active now."""
        return [i for i, instance in self.instances.items() if instance.status in ACTIVE]

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> "DurableDouble":
        """Serve on a free loopback port from a background thread."""
        self._serving.start(self._open)
        return self

    def stop(self) -> None:
        """Stop serving and end the thread."""
        if self._runner is not None:
            self._serving.stop(self._close)

    async def _close(self) -> None:
        if self._blob_service is not None:
            await self._blob_service.close()
        assert self._runner is not None
        await self._runner.cleanup()

    async def _open(self) -> None:
        app = web.Application()
        app.add_routes(
            [
                web.get("/durabletask/instances", self._list),
                web.get("/durabletask/instances/{id}", self._get_status),
                web.delete("/durabletask/instances/{id}", self._purge),
                web.post("/durabletask/orchestrators/{fn}/{id}", self._start),
                web.post("/durabletask/orchestrators/{fn}", self._start),
                web.post("/durabletask/instances/{id}/terminate", self._terminate),
                web.post("/durabletask/instances/{id}/raiseEvent/{event}", self._raise_event),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    # -- handlers ----------------------------------------------------------------------

    async def _enter(self, kind: str) -> Optional[web.Response]:
        """Count the call, wait the latency, and answer a planned fault if there is one."""
        self.calls[kind] += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        queue = self.faults.get(kind)
        if queue:
            fault = queue[0]
            fault.times -= 1
            if fault.times <= 0:
                queue.popleft()
            return _json(fault.status, fault.body)
        return None

    async def _get_status(self, request: web.Request) -> web.Response:
        fault = await self._enter("status")
        if fault is not None:
            return fault
        instance_id = request.match_info["id"]
        hold, self.hold_status = self.hold_status, None
        if hold is not None:
            await hold(instance_id)
        instance = self.instances.get(instance_id)
        if instance is None:
            return web.Response(status=404)  # empty body, as the extension sends
        body = instance.body(instance_id)
        if request.query.get("showInput", "").lower() == "false":
            body["input"] = None  # the member stays, null (DataMember without EmitDefaultValue)
        if instance.status in ACTIVE:
            # 202 with Location (the request's own URL) and Retry-After: 5.
            return _json(202, body, {"Location": str(request.url), "Retry-After": "5"})
        failed_as_500 = request.query.get("returnInternalServerErrorOnFailure", "") == "true"
        return _json(500 if instance.status == "Failed" and failed_as_500 else 200, body)

    async def _list(self, request: web.Request) -> web.Response:
        fault = await self._enter("list")
        if fault is not None:
            return fault
        wanted = {s for s in request.query.get("runtimeStatus", "").split(",") if s}
        top = int(request.query.get("top", "100"))
        token = request.headers.get("x-ms-continuation-token", "")
        if token and not token.startswith("after:"):
            return _json(400, {"Message": "bad continuation token"})
        after = token[len("after:") :]
        created_to = request.query.get("createdTimeTo")
        ids = sorted(
            i
            for i, instance in self.instances.items()
            if i > after
            and (not wanted or instance.status in wanted)
            and (created_to is None or instance.created < parse_time(created_to))
        )
        page = ids[:top]
        # The header is always added; on the last page its value is empty (a null token).
        following = f"after:{page[-1]}" if len(ids) > top else ""
        body = [self.instances[i].body(i) for i in page]
        if request.query.get("showInput", "").lower() == "false":
            for document in body:
                document["input"] = None
        return _json(200, body, {"x-ms-continuation-token": following})

    async def _purge(self, request: web.Request) -> web.Response:
        fault = await self._enter("purge")
        if fault is not None:
            return fault
        if self.purge_delay:
            # Carried out even when the caller has gone: the extension purges all the same.
            await asyncio.shield(asyncio.sleep(self.purge_delay))
        instance_id = request.match_info["id"]
        instance = self.instances.get(instance_id)
        if instance is None:
            return web.Response(status=404)
        if instance.status in ACTIVE and self.purge_refuses_active:
            return _json(500, {"Message": _SOMETHING_WENT_WRONG})
        del self.instances[instance_id]
        self.purged.append(instance_id)
        return _json(200, {"instancesDeleted": 1})

    async def _start(self, request: web.Request) -> web.Response:
        fault = await self._enter("start")
        if fault is not None:
            return fault
        function_name = request.match_info["fn"]
        # Without an id the extension makes one: Guid.NewGuid().ToString("N")
        # (DurableClient.StartNewAsync).
        instance_id = request.match_info.get("id") or uuid.uuid4().hex
        if function_name not in self.orchestrators:
            message = (
                f"The function '{function_name}' doesn't exist, is disabled, or is "
                "not an orchestrator function. Additional info: ..."
            )
            return _json(
                400,
                {
                    "Message": "One or more of the arguments submitted is incorrect",
                    "ExceptionMessage": message,
                    "ExceptionType": "System.ArgumentException",
                },
            )
        raw = await request.read()
        # The non-atomic check: read, let time pass, then write.
        existing = self.instances.get(instance_id)
        if self.start_check_delay:
            await asyncio.sleep(self.start_check_delay)
        refuses = self.duplicate_answer != "replace"
        if existing is not None and existing.status in ACTIVE and refuses:
            self.refused_starts.append((function_name, instance_id))
            message = (
                f"An Orchestration instance with the status {existing.status} already exists."
            )
            if self.duplicate_answer == "modern":
                return _json(409, {"Message": message})
            return _json(
                500,
                {
                    "Message": _SOMETHING_WENT_WRONG,
                    "ExceptionMessage": message,
                    "ExceptionType": "System.InvalidOperationException",
                },
            )
        self.accepted_starts.append((function_name, instance_id))
        current = self.instances.get(instance_id)
        if current is not None and current.status in ACTIVE and refuses:
            # The check passed on a stale read: the caller hears 202, but the runtime
            # drops this start message because an execution is already active.
            self.dropped_starts.append((function_name, instance_id))
            return _check_status_response(request, instance_id)
        now = _now()
        # The SDK sends the input JSON-encoded twice: a JSON string holding JSON.
        given = json.loads(raw) if raw else None
        created = Instance(
            function_name,
            "Pending",
            input=json.loads(given) if isinstance(given, str) else given,
            created=now,
            updated=now,
        )
        self.instances[instance_id] = created
        self.activity.append((time.monotonic(), instance_id, True))
        self.created.append((instance_id, created.input))
        created.run = _run_of(created.input)
        if self.pickup_delay == 0:
            self._first_episode(instance_id, created)
        elif self.pickup_delay is not None:
            self._later(self.pickup_delay, self._first_episode_later(instance_id, created))
        return _check_status_response(request, instance_id)

    def _first_episode(self, instance_id: str, instance: Instance) -> None:
        """The orchestrator's first episode: Running, its run shown, the run begun."""
        if not self._current(instance_id, instance) or instance.status != "Pending":
            return
        instance.status = "Running"
        instance.updated = _now()
        if instance.run is not None:
            instance.custom_status = _shown(instance.run)
        self._begin_or_wait(instance_id, instance)

    def _first_episode_later(
        self, instance_id: str, instance: Instance
    ) -> Callable[[], Awaitable[None]]:
        async def episode() -> None:
            self._first_episode(instance_id, instance)

        return episode

    # -- the job's part ----------------------------------------------------------------

    def _begin_or_wait(self, instance_id: str, instance: Instance) -> None:
        """Begin the instance's run now, or at its due time if it waits (debounced)."""
        state = instance.run
        if state is not None and state.waiting:
            due = state.due_at
            assert due is not None
            delay = (
                parse_time(due) - datetime.datetime.now(datetime.timezone.utc)
            ).total_seconds()
            self._later(max(delay, 0.0), lambda: self._due(instance_id, instance))
            return
        run_id = state.id if state is not None else ""
        self.runs.append(
            (instance_id, run_id, instance.input, datetime.datetime.now(datetime.timezone.utc))
        )
        if state is not None and state.stopping:  # a Stop for it came before it began
            self._later(0.0, lambda: self._run_ended(instance_id, instance))
        elif self.complete_after is not None:
            self._later(self.complete_after, lambda: self._run_ended(instance_id, instance))

    def _later(self, delay: float, work: Callable[[], Awaitable[None]]) -> None:
        """Do ``work()`` ``delay`` seconds from now, on the double's loop."""
        loop = asyncio.get_running_loop()
        loop.call_later(delay, lambda: asyncio.ensure_future(work()))

    async def _due(self, instance_id: str, instance: Instance) -> None:
        """A waiting run's timer fired: ask the channel (SingletonNextRun ``begin``)."""
        state = instance.run
        if not self._current(instance_id, instance) or state is None or state.stopping:
            return
        assert self.channels is not None, "use_storage() first"
        request = {"op": "begin", "hub": state.hub, "instanceId": instance_id}
        decision = await self._next_run_activity(instance_id, instance, request)
        if decision is None:
            return
        if not self._current(instance_id, instance) or instance.run is None:
            return
        if "wait" in decision:
            instance.run = dataclasses.replace(instance.run, due_at=decision["wait"])
            instance.custom_status = _shown(instance.run)
            self._begin_or_wait(instance_id, instance)
        elif "begin" in decision:
            self._continue(instance_id, instance, decision["begin"])
        else:  # a Stop dropped it before it began
            await self._run_ended(instance_id, instance)

    async def _next_run_activity(
        self, instance_id: str, instance: Instance, request: Dict[str, Any]
    ) -> Any:
        """SingletonNextRun as the job calls it: with the job's own retry options
        (``call_activity_with_retry``, durable_singleton._next_run.NEXT_RUN_RETRY), each attempt
        the activity's code. When every attempt fails, the orchestration fails, as an
        activity's TaskFailedException left unhandled fails it: the instance ends Failed
        (None is returned)."""
        assert self.channels is not None, "use_storage() first"
        attempts = NEXT_RUN_RETRY.max_number_of_attempts
        pause = NEXT_RUN_RETRY.first_retry_interval_in_milliseconds / 1000
        for attempt in range(attempts):
            try:
                return await next_run(self.channels, request, self.queues)
            except Exception:
                if attempt + 1 == attempts:
                    break
                await asyncio.sleep(pause)
        self._finish(instance_id, instance, "Failed")
        return None

    async def _take_next(self, instance_id: str, instance: Instance) -> Optional[Dict[str, Any]]:
        """The run has ended: take the next run from the channel (SingletonNextRun
        ``take``), when the app started the instance (its run names the task hub)."""
        state = instance.run
        if state is None or state.hub is None:
            return None
        assert self.channels is not None, "use_storage() first"
        request = {"op": "take", "hub": state.hub, "instanceId": instance_id, "run": state.id}
        taken = await self._next_run_activity(instance_id, instance, request)
        return taken if isinstance(taken, dict) and taken else None

    async def _run_ended(self, instance_id: str, instance: Instance) -> None:
        """The run ended: continue as new with the next run, or complete."""
        if not self._current(instance_id, instance) or instance.held is not None:
            return
        if instance.ending:
            return
        instance.ending = True
        following = await self._take_next(instance_id, instance)
        if not self._current(instance_id, instance):
            return
        if following is None:
            self._finish(instance_id, instance, "Completed")
        else:
            self._continue(instance_id, instance, following)

    def _continue(
        self, instance_id: str, instance: Instance, following: Dict[str, Any]
    ) -> Instance:
        """Continue as new with run ``{"request", "input"}``: a new execution of the same
        instance (so a pending timer of the old one is void). Each execution's
        ExecutionStarted stamps the instance row's CreatedTime anew
        (DurableTask.AzureStorage AzureTableTrackingStore.UpdateStateAsync)."""
        assert instance.run is not None
        hub = instance.run.hub
        request = following["request"]
        successor = Instance(
            instance.name,
            "Running",
            input=following["input"],
            run=RunState(request, hub, stopping=instance.run_stops_for(request)),
        )
        assert successor.run is not None
        successor.custom_status = _shown(successor.run)
        self.instances[instance_id] = successor
        self._begin_or_wait(instance_id, successor)
        return successor

    def _take(self, instance_id: str, instance: Instance, data: Any) -> None:
        """The job takes a Stop, by its own rules."""
        if not self._current(instance_id, instance):
            return  # it ended before it took the event: the event is dropped
        instance.stops.append(data)
        if instance.run is None:
            self._runs_made += 1
            instance.run = RunState(f"own-run-{self._runs_made}")
        before = instance.run
        instance.run = before.with_stop(data)
        instance.custom_status = _shown(instance.run)
        instance.updated = _now()
        if instance.run.stopping and not before.stopping and self.stop_delay is not None:
            self._later(self.stop_delay, lambda: self._run_ended(instance_id, instance))

    def _current(self, instance_id: str, instance: Instance) -> bool:
        return self.instances.get(instance_id) is instance and instance.status in ACTIVE

    async def _active_instance(
        self, kind: str, request: web.Request
    ) -> Union[web.Response, Tuple[str, Instance]]:
        """The id and instance a management call targets, or the answer when there is
        none to act on: a planned fault, 404 for an unknown id, 410 once finished."""
        fault = await self._enter(kind)
        if fault is not None:
            return fault
        instance_id = request.match_info["id"]
        instance = self.instances.get(instance_id)
        if instance is None:
            return web.Response(status=404)
        if instance.status in FINISHED:
            return web.Response(status=410)
        return instance_id, instance

    async def _terminate(self, request: web.Request) -> web.Response:
        found = await self._active_instance("terminate", request)
        if isinstance(found, web.Response):
            return found
        instance_id, instance = found
        self.terminations.append((instance_id, request.query.get("reason", "")))
        if instance.status == "Pending" and not self.terminate_ends_pending:
            return web.Response(status=202)  # accepted, and the instance stays Pending
        if instance.held is not None and instance.terminated_in_switch:
            instance.held = instance.switching_to = None  # the switch never commits
            self._terminate_later(instance_id, instance)
        elif instance.held is not None:  # for the next execution
            instance.held.append(lambda now: self._terminate_later(instance_id, now))
        else:
            self._terminate_later(instance_id, instance)
        return web.Response(status=202)

    def _terminate_later(self, instance_id: str, instance: Instance) -> None:
        if self.terminate_delay is not None:
            asyncio.get_running_loop().call_later(
                self.terminate_delay, self._finish, instance_id, instance, "Terminated"
            )

    def _finish(self, instance_id: str, instance: Instance, status: str) -> None:
        # Only the execution this was meant for: a newer one under the id runs on.
        if not self._current(instance_id, instance):
            return
        instance.status = status
        instance.updated = _now()
        self.activity.append((time.monotonic(), instance_id, False))

    async def _raise_event(self, request: web.Request) -> web.Response:
        target = self.instances.get(request.match_info["id"])
        if self.due_before_event and target is not None and target.run is not None:
            if target.run.waiting:
                self.due_before_event = False
                await self._due(request.match_info["id"], target)
        found = await self._active_instance("raiseEvent", request)
        if isinstance(found, web.Response):
            return found
        instance_id, instance = found
        event = request.match_info["event"]
        if request.content_type.lower() != "application/json":
            return _json(400, {"Message": "Only application/json request content is supported"})
        text = await request.text()
        self.events.append((instance_id, event, text))
        data = json.loads(text) if text.strip() else None
        if instance.held is not None:  # for the next execution
            instance.held.append(lambda now: self._deliver(instance_id, now, event, data))
        else:
            self._deliver(instance_id, instance, event, data)
        return web.Response(status=202)

    def _deliver(self, instance_id: str, instance: Instance, event: str, data: Any) -> None:
        """The instance receives an event raised to it, and takes it after
        ``event_delay``; a job that honours Stop (``stop_delay`` set) then finishes its
        item in flight and ends its run."""
        if event == "Stop" and self.stop_delay is not None:
            if self.event_delay:
                asyncio.get_running_loop().call_later(
                    self.event_delay, self._take, instance_id, instance, data
                )
            else:
                self._take(instance_id, instance, data)


def ago(seconds: float) -> datetime.datetime:
    """A time ``seconds`` before now (UTC): when a test's instance was created."""
    return datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds)


def starter_binding(
    rpc_base_url: str, task_hub: str = "TestHubName", origin: str = "http://localhost:7071"
) -> str:
    """The ``durableClient`` binding JSON as the Functions host builds it."""
    base = f"{origin}/runtime/webhooks/durabletask"
    query = f"taskHub={task_hub}&connection=Storage&code={SYSTEM_KEY}"
    instance = f"{base}/instances/INSTANCEID"
    orchestrators = f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]"
    return json.dumps(
        {
            "taskHubName": task_hub,
            "creationUrls": {
                "createNewInstancePostUri": f"{orchestrators}?code={SYSTEM_KEY}",
                "createAndWaitOnNewInstancePostUri": f"{orchestrators}"
                f"?timeout={{timeoutInSeconds}}&pollingInterval={{intervalInSeconds}}"
                f"&code={SYSTEM_KEY}",
            },
            "managementUrls": {
                "id": "INSTANCEID",
                "statusQueryGetUri": f"{instance}?{query}",
                "sendEventPostUri": f"{instance}/raiseEvent/{{eventName}}?{query}",
                "terminatePostUri": f"{instance}/terminate?reason={{text}}&{query}",
                "rewindPostUri": f"{instance}/rewind?reason={{text}}&{query}",
                "purgeHistoryDeleteUri": f"{instance}?{query}",
                "restartPostUri": f"{instance}/restart?{query}",
                "suspendPostUri": f"{instance}/suspend?reason={{text}}&{query}",
                "resumePostUri": f"{instance}/resume?reason={{text}}&{query}",
            },
            "baseUrl": base,
            "requiredQueryStringParameters": f"code={SYSTEM_KEY}",
            "rpcBaseUrl": rpc_base_url,
        }
    )


def _check_status_response(request: web.Request, instance_id: str) -> web.Response:
    """The extension's answer to a start (HttpApiHandler.CreateCheckStatusResponseMessage):
    202, the management URLs on the request's origin, ``Location`` (the status URL) and
    ``Retry-After: 10``."""
    instance = f"{request.url.origin()}/runtime/webhooks/durabletask/instances/{instance_id}"
    query = f"taskHub=TestHubName&connection=Storage&code={SYSTEM_KEY}"
    status_url = f"{instance}?{query}"
    body = {
        "id": instance_id,
        "statusQueryGetUri": status_url,
        "sendEventPostUri": f"{instance}/raiseEvent/{{eventName}}?{query}",
        "terminatePostUri": f"{instance}/terminate?reason={{text}}&{query}",
        "purgeHistoryDeleteUri": status_url,
        "restartPostUri": f"{instance}/restart?{query}",
        "suspendPostUri": f"{instance}/suspend?reason={{text}}&{query}",
        "resumePostUri": f"{instance}/resume?reason={{text}}&{query}",
    }
    return _json(202, body, {"Location": status_url, "Retry-After": "10"})


def _json(status: int, body: Any, headers: Optional[Dict[str, str]] = None) -> web.Response:
    text = "" if body is None else json.dumps(body)
    return web.Response(status=status, text=text, content_type="application/json", headers=headers)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _format(moment: datetime.datetime) -> str:
    """A time as the extension writes it: ``CreatedTime.ToString("s") + "Z"``, UTC to the
    whole second (HttpApiHandler.ConvertFrom)."""
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _run_of(input_: Any) -> Optional[RunState]:
    """The run a start's input names (the ``run`` member the starter adds), if any."""
    member = input_.get("run") if isinstance(input_, dict) else None
    if not isinstance(member, dict):
        return None
    return RunState(member["id"], member.get("hub"), member.get("dueAt"))


def _shown(run: RunState) -> Dict[str, Any]:
    """The custom status SingletonOrchestrator shows for ``run``: its run members and
    whether a Stop reached it (durable_singleton.job._run._Progress)."""
    return {**run.status(), "stopping": run.stopping}
