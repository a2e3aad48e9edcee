"""Read a start request from an HTTP request: the route, the query and the body.

Each part is read here and the request checked by the one constructor every door uses
(:func:`durable_singleton._request.checked_start`), so an HTTP start keeps exactly the rules
a library start and a timer tick keep.
"""

from __future__ import annotations

from typing import Collection, List, Optional, Tuple, Type
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from . import _problems as problems
from ._catalog import Catalog
from ._idempotency import HEADER as IDEMPOTENCY_HEADER
from ._idempotency import KEY_RULE, valid_key
from ._next_run import (
    MAX_DEBOUNCE_MAX_SECONDS,
    MAX_DEBOUNCE_SECONDS,
    MIN_DEBOUNCE_SECONDS,
    Debounce,
)
from ._policy import OnConflict, Reuse
from ._problems import ProblemError
from ._request import (
    StartRequest,
    check_function_name,
    check_instance_id,
    checked_start,
    debounce_of,
)
from ._settings import Choice, Settings, choice_values, parse_choice


def parse_start_request(
    req: func.HttpRequest, settings: Settings, catalog: Catalog
) -> StartRequest:
    """Read a start request from the route, the query and the body, and check it with
    :func:`checked_start`, as every door is checked.

    Raises ProblemError: 404 for an unknown orchestrator, 413 for a body over the
    limit, 400 for anything else that is wrong.
    """
    function_name, instance_id = read_route(req, catalog.names)
    given = read_choice(req, "onConflict", OnConflict, settings.on_conflict)
    reuse = read_choice(req, "reuse", Reuse, settings.reuse)
    debounce = read_debounce(req)
    return checked_start(
        catalog,
        settings,
        function_name,
        instance_id,
        raw=req.get_body() or b"",
        on_conflict=given if query_values(req, "onConflict") else None,
        reuse=reuse,
        debounce=debounce,
        key=read_idempotency_key(req),
    )


def read_debounce(req: func.HttpRequest) -> Optional[Debounce]:
    """debounceSeconds and debounceMaxSeconds (default 10 times debounceSeconds, at
    most a day); None when the request is not debounced."""
    seconds = read_whole_number(req, "debounceSeconds", MIN_DEBOUNCE_SECONDS, MAX_DEBOUNCE_SECONDS)
    longest = None
    if seconds is not None:
        longest = read_whole_number(req, "debounceMaxSeconds", seconds, MAX_DEBOUNCE_MAX_SECONDS)
    elif query_values(req, "debounceMaxSeconds"):
        longest = 0  # refused below: it needs debounceSeconds
    return debounce_of(seconds, longest)


def read_whole_number(req: func.HttpRequest, name: str, low: int, high: int) -> Optional[int]:
    """Query parameter ``name`` as a whole number from ``low`` to ``high``; None when
    absent; a 400 problem otherwise."""
    values = set(query_values(req, name))
    if not values:
        return None
    text = values.pop() if len(values) == 1 else ""
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise ProblemError(problems.invalid_number_query(name, low, high))
    return int(text)


def read_idempotency_key(req: func.HttpRequest) -> Optional[str]:
    """The request's Idempotency-Key, None when it has none; a 400 problem when it
    breaks the rule."""
    value = req.headers.get(IDEMPOTENCY_HEADER)
    if value is None:
        return None
    if not valid_key(str(value)):
        raise problems.refusal("invalid-idempotency-key", KEY_RULE)
    return str(value)


def read_route(req: func.HttpRequest, orchestrators: Collection[str]) -> Tuple[str, str]:
    """The route's orchestrator name and instance id, each checked (404 for an
    unknown orchestrator, 400 for a bad id)."""
    function_name = check_function_name(req.route_params.get("functionName", ""), orchestrators)
    return function_name, check_instance_id(req.route_params.get("instanceId", ""))


def read_choice(req: func.HttpRequest, name: str, kind: Type[Choice], default: Choice) -> Choice:
    """Read query parameter ``name`` as a member of ``kind``; ``default`` when absent.

    Raises a 400 problem for a value outside ``kind`` or for a parameter repeated with
    different values.
    """
    values = set(query_values(req, name))
    if not values:
        return default
    member = parse_choice(kind, values.pop()) if len(values) == 1 else None
    if member is None:
        raise ProblemError(problems.invalid_query(name, choice_values(kind)))
    return member


def query_values(req: func.HttpRequest, name: str) -> List[str]:
    """Every value of query parameter ``name``, repeats included.

    ``req.params`` keeps one value per name, so the query string of ``req.url`` is
    read instead; the host puts the whole query there. ``req.params`` is the
    fallback for a request built without one, with repeated values comma-joined.
    """
    values = [
        value
        for key, value in parse_qsl(urlsplit(req.url).query, keep_blank_values=True)
        if key == name
    ]
    if not values and name in req.params:
        values = req.params[name].split(",")
    return values
