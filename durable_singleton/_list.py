"""SingletonList: an orchestrator's instances as the task hub knows them, paged.

The Durable API's query has no filter by orchestrator, so each page is filtered here: a
page may hold fewer than ``top`` (even none) and still have a next. The continuation token
given to the caller wraps the Durable API's, so one the app did not give is a 400."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from typing import Any, Dict, Iterable, List, Optional, Tuple
from urllib.parse import urlsplit

import azure.functions as func
from azure.durable_functions import OrchestrationRuntimeStatus

from . import _answers as answers
from . import _problems as problems
from ._durable import DurableClient, InstancePage, InstanceStatus
from ._invocation import Invocation
from ._limit import slot_id
from ._limited import listed_queues
from ._links import Links, list_links
from ._lock import LockUnavailable
from ._policy import FINISHED
from ._problems import ProblemError
from ._request import check_function_name
from ._root import Root
from ._settings import choice_values, parse_choice
from ._validation import query_values, read_whole_number

#: Instances per page unless ``top`` says otherwise, and the most it may ask for.
DEFAULT_TOP = 50
MAX_TOP = 100
#: The longest continuation token accepted (the Durable API's are far shorter).
MAX_TOKEN_CHARS = 4096


async def list_instances(call: Invocation) -> Tuple[func.HttpResponse, str]:
    """Answer ``GET /api/singletons/{functionName}`` (``routes.list``): 200 with a page of
    its instances, or problem+json (400 bad parameter, 404 unknown orchestrator, 5xx
    Durable API)."""
    req = call.req
    function_name = check_function_name(
        req.route_params.get("functionName", ""), call.root.catalog.names
    )
    # Every parameter is checked before the Durable API is called.
    statuses = read_statuses(req)
    top = read_whole_number(req, "top", 1, MAX_TOP) or DEFAULT_TOP
    continuation = read_continuation(req)
    page = await orchestrator_page(call.durable, function_name, statuses, top, continuation)
    route = call.routes.list.replace("{functionName}", function_name)
    instances = call.routes.instance_paths(urlsplit(req.url).path, route)
    links = list_links(call.settings.management_links, req, call.durable.binding, instances)
    mine = sorted(
        page.statuses, key=lambda s: str(s.document.get("createdTime") or ""), reverse=True
    )
    items = [list_item(status, links) for status in mine]
    if call.root.catalog.accepts_next_run(function_name):
        await _mark_buffered(call, mine, items)
    body: Dict[str, Any] = {"instances": items, "continuationToken": _wrap(page.continuation)}
    if continuation is None and call.root.catalog.limit(function_name) is not None:
        body["keys"] = await keys_of(call.root, call.durable.task_hub, function_name)
    return answers.json_response(200, body), "listed"


async def orchestrator_page(
    durable: DurableClient,
    function_name: str,
    statuses: Iterable[OrchestrationRuntimeStatus],
    top: int,
    continuation: Optional[str],
) -> InstancePage:
    """One page of the task hub's instances (``top`` from ``continuation``, of the runtime
    ``statuses`` given or all), keeping ``function_name``'s: the Durable API filters by
    status, not by name."""
    page = await durable.list_page(statuses, top, continuation)
    mine = [status for status in page.statuses if status.name == function_name]
    return InstancePage(mine, page.continuation)


async def keys_of(root: Root, task_hub: str, function_name: str) -> List[Dict[str, Any]]:
    """The keys of an orchestrator with a limit that have instances active or requests
    waiting: each key's active slots' instance ids, its queue's length and its oldest
    waiting request, from one listing of the queues (no queue is read)."""
    keys = []
    for key, metadata in await listed_queues(root, task_hub):
        slots = [int(n) for n in metadata.get("slots", "").split(",") if n.isdigit()]
        waiting = int(metadata.get("waiting", "0") or 0)
        if metadata.get("orchestrator") != function_name or not (slots or waiting):
            continue
        oldest = None
        if metadata.get("oldestrequest"):
            oldest = {
                "requestId": metadata["oldestrequest"],
                "queuedAt": metadata.get("oldestqueuedat", ""),
            }
        keys.append(
            {
                "key": key,
                "active": [slot_id(key, n) for n in sorted(slots)],
                "queued": waiting,
                "oldestQueued": oldest,
            }
        )
    return keys


def list_item(status: InstanceStatus, links: Links) -> Dict[str, Any]:
    """One instance as the list shows it: its members (``stuck`` among them), the job's
    ``progress`` where it reports one, its URLs."""
    instance_id = str(status.document.get("instanceId", ""))
    item = answers.describe(status, instance_id, links)
    progress = job_progress(status.custom_status)
    if progress is not None:
        item["progress"] = progress
    return item


async def _mark_buffered(
    call: Invocation, statuses: List[InstanceStatus], items: List[Dict[str, Any]]
) -> None:
    """Say of each active instance whether a next run is ``buffered`` in its channel (one
    Blob read each, at once); an instance whose channel cannot be read says nothing."""
    channels = call.root.next_runs()
    active = [
        (item, str(status.document.get("instanceId", "")))
        for status, item in zip(statuses, items, strict=True)
        if status.runtime_status not in FINISHED
    ]
    read = await asyncio.gather(
        *[channels.read(call.durable.task_hub, instance_id) for _, instance_id in active],
        return_exceptions=True,
    )
    for (item, _), channel in zip(active, read, strict=True):
        if isinstance(channel, BaseException):
            if not isinstance(channel, LockUnavailable):
                raise channel
            continue
        item["buffered"] = channel is not None and not channel.ended and channel.next is not None


def job_progress(custom_status: Any) -> Optional[Dict[str, int]]:
    """``{processed, total, pass}`` from a job's custom status (SingletonOrchestrator's
    shape), or None when it shows no progress."""
    if not isinstance(custom_status, dict):
        return None
    progress = {
        key: custom_status[key]
        for key in ("processed", "total", "pass")
        if type(custom_status.get(key)) is int and custom_status[key] >= 0
    }
    return progress if {"processed", "total"} <= set(progress) else None


def read_statuses(req: func.HttpRequest) -> List[OrchestrationRuntimeStatus]:
    """Query ``status``: runtime statuses, comma-separated or repeated; none: every one."""
    raw = query_values(req, "status")
    chosen: List[OrchestrationRuntimeStatus] = []
    for value in (part for text in raw for part in text.split(",")):
        member = parse_choice(OrchestrationRuntimeStatus, value)
        if member is None:
            raise ProblemError(
                problems.invalid_query("status", choice_values(OrchestrationRuntimeStatus))
            )
        if member not in chosen:
            chosen.append(member)
    return chosen


def read_continuation(req: func.HttpRequest) -> Optional[str]:
    """Query ``continuationToken``: the Durable API's token inside one this app gave."""
    values = set(query_values(req, "continuationToken"))
    if not values:
        return None
    text = values.pop() if len(values) == 1 else ""
    try:
        if not 0 < len(text) <= MAX_TOKEN_CHARS:
            raise ValueError(text)
        document = json.loads(base64.urlsafe_b64decode(text.encode("ascii")))
        token = document["durable"] if isinstance(document, dict) else None
        if not isinstance(token, str) or not token:
            raise ValueError(text)
        return token
    except (ValueError, UnicodeError, binascii.Error, KeyError):
        raise ProblemError(problems.invalid_token_query("continuationToken")) from None


def _wrap(continuation: Optional[str]) -> Optional[str]:
    """The caller's token for the Durable API's ``continuation`` (None: the last page)."""
    if continuation is None:
        return None
    return base64.urlsafe_b64encode(json.dumps({"durable": continuation}).encode()).decode()
