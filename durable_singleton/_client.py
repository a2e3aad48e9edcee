"""SingletonClient: start, read, list and stop singletons from code of an app's own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional

from azure.durable_functions import OrchestrationRuntimeStatus

from . import _problems as problems
from ._durable import InstancePage, InstanceStatus
from ._instances import StopMode, end_instance
from ._limited import Admitted, start_limited
from ._links import host_links
from ._list import MAX_TOP, orchestrator_page
from ._policy import OnConflict, OnFull, Reuse
from ._problems import ProblemError
from ._request import (
    check_function_name,
    checked_limited_start,
    checked_start,
    debounce_of,
)
from ._root import Root
from ._starter import Outcome, start_singleton


@dataclass(frozen=True)
class Stopped:
    """What a stop came to: the status the instance had when asked, and the request
    whose next (or waiting) run it dropped, when it is known that it did (the answers'
    ``droppedRequestId``)."""

    status: InstanceStatus
    dropped_request_id: Optional[str]


class SingletonClient:
    """The guarantee for code of an app's own (a queue trigger, a function with a route
    of its own), through one ``durableClient`` binding: every call keeps the rules the
    HTTP routes keep. Made by :meth:`durable_singleton.SingletonApp.client`."""

    def __init__(self, root: Root, binding: str) -> None:
        """Act through ``root`` (the app's composition root in this event loop) and the
        ``durableClient`` binding's JSON ``binding``."""
        self._root = root
        self._durable = root.durable(binding)

    async def start(
        self,
        function_name: str,
        instance_id: str,
        input: Any = None,
        *,
        on_conflict: Optional[OnConflict] = None,
        reuse: Optional[Reuse] = None,
        debounce_seconds: Optional[int] = None,
        debounce_max_seconds: Optional[int] = None,
    ) -> Outcome:
        """Start ``function_name`` under ``instance_id`` unless the policies say otherwise.

        ``on_conflict``/``reuse``: the policies (the app settings' defaults when not
        given); ``OnConflict.BUFFER_ONE`` hands the input to an active instance as its
        next run. ``debounce_seconds``/``debounce_max_seconds``: as the route's
        ``debounceSeconds``/``debounceMaxSeconds`` (they imply ``BUFFER_ONE``).

        Returns the :class:`Outcome`: started, or what was done about the existing
        instance. Raises ``errors.ProblemError`` (a broken rule, nothing sent) or
        another ``SingletonError`` (docs/library.md).
        """
        request = checked_start(
            self._root.catalog,
            self._root.settings,
            function_name,
            instance_id,
            input_=input,
            on_conflict=on_conflict,
            reuse=reuse,
            debounce=debounce_of(debounce_seconds, debounce_max_seconds),
        )
        return await start_singleton(request, self._durable, self._root)

    async def start_limited(
        self,
        function_name: str,
        key: str,
        input: Any = None,
        *,
        on_full: OnFull = OnFull.QUEUE,
    ) -> Admitted:
        """Start ``function_name`` for ``key`` when fewer than its limit of instances of
        the key are active, else queue the request (first in, first out).

        Returns :class:`Admitted`: started as a slot's ``instance_id``, or waiting at
        ``position``; ``request_id`` names it. ``OnFull.REJECT`` refuses instead of
        queuing (``LimitReached``). Raises ``errors.ProblemError`` (a broken rule; 400
        ``no-limit`` for an orchestrator without a limit), ``QueueFull`` past
        ``SINGLETON_QUEUE_BOUND``, or another ``SingletonError``.
        """
        start = checked_limited_start(
            self._root.catalog,
            self._root.settings,
            function_name,
            key,
            input_=input,
            on_full=on_full,
        )
        return await start_limited(start, self._durable, self._root)

    async def status(self, instance_id: str) -> Optional[InstanceStatus]:
        """The instance's status, or None when no instance has the id."""
        return await self._durable.status(instance_id)

    async def list(
        self,
        function_name: str,
        *,
        statuses: Iterable[OrchestrationRuntimeStatus] = (),
        top: int = 100,
        continuation: Optional[str] = None,
    ) -> InstancePage:
        """One page of ``function_name``'s instances (of those in ``statuses``, or all),
        from the task hub's page of ``top`` beginning at ``continuation``; the page's
        ``continuation`` reads on (None: the last). Raises ``errors.ProblemError``: 404
        for an orchestrator the app does not guard, 400 for ``top`` outside 1 to 100."""
        check_function_name(function_name, self._root.catalog.names)
        if not 1 <= top <= MAX_TOP:
            raise ProblemError(problems.invalid_number_query("top", 1, MAX_TOP))
        return await orchestrator_page(self._durable, function_name, statuses, top, continuation)

    async def stop(
        self, function_name: str, instance_id: str, *, mode: StopMode = StopMode.STOP
    ) -> Stopped:
        """Ask the instance to end: ``StopMode.STOP`` (it finishes its item in flight)
        or ``StopMode.TERMINATE``. Raises ``errors.ProblemError`` 404 when no instance of
        ``function_name`` has the id, 409 when it has ended, 400 for a Stop to an
        orchestrator that does not take one; ``errors.StopOutcomeUnknown`` when the Stop
        or terminate was sent and its answer lost (it may have been carried out)."""
        links = host_links(self._durable.binding)
        ended = await end_instance(
            self._durable, self._root, function_name, instance_id, mode, links
        )
        return Stopped(ended.status, ended.dropped)
