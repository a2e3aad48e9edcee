"""A start request, checked once: the core's type, and the one constructor every door
builds it with (the HTTP route, ``SingletonClient.start``, a schedule's tick), with the rules
it keeps.

Nothing invalid gets past :func:`checked_start`, so bad input never reaches the Durable
runtime. Each door only reads its own input (``_validation`` reads the HTTP request).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Collection, Dict, Optional

from . import _problems as problems
from ._catalog import Catalog, InvalidInput
from ._idempotency import KeyedRequest
from ._idempotency import keyed as keyed_request
from ._limit import slot_id
from ._lock import HeldLock
from ._next_run import (
    DEBOUNCE_MAX_FACTOR,
    MAX_DEBOUNCE_MAX_SECONDS,
    MAX_DEBOUNCE_SECONDS,
    MIN_DEBOUNCE_SECONDS,
    Debounce,
)
from ._policy import OnConflict, OnFull, Reuse
from ._problems import ProblemError
from ._settings import Settings

MAX_INSTANCE_ID_LENGTH = 100


#: The characters an instance id may hold. The Durable SDK pastes ids into request
#: URLs without encoding, so anything that means something in a URL (/ \ # ? % & +,
#: spaces, control characters) must never get through.
_INSTANCE_ID = re.compile(r"[A-Za-z0-9\-_.:~@]+")


INSTANCE_ID_RULE = (
    f"An instance id is 1 to {MAX_INSTANCE_ID_LENGTH} characters from ASCII letters, "
    "ASCII digits and - _ . : ~ @; it must not start with @ and must not be made of "
    "dots only."
)


@dataclass(frozen=True)
class StartRequest:
    """A start request that passed every check."""

    function_name: str
    instance_id: str
    input: Any
    on_conflict: OnConflict
    reuse: Reuse
    #: The request's Idempotency-Key and fingerprint, when it carried a key.
    keyed: Optional[KeyedRequest] = None
    #: debounceSeconds and debounceMaxSeconds, when given (onConflict is bufferOne).
    debounce: Optional[Debounce] = None
    #: The run's name, when the start names it: a queued request's start in a slot of its
    #: key (durable_singleton._limited) names its request; such a start opens no channel.
    run_id: Optional[str] = None
    #: Checked under the id's lease before anything is sent: a queued request's start
    #: makes sure its slot is still reserved for it (raises NotStarted when not).
    before_start: Optional[Callable[[HeldLock], Awaitable[None]]] = None


def checked_start(
    catalog: Catalog,
    settings: Settings,
    function_name: str,
    instance_id: str,
    *,
    raw: Optional[bytes] = None,
    input_: Any = None,
    on_conflict: Optional[OnConflict] = None,
    reuse: Optional[Reuse] = None,
    debounce: Optional[Debounce] = None,
    key: Optional[str] = None,
) -> StartRequest:
    """The one constructor of a start request: every rule a start keeps, in one order,
    whichever door it came through. ``raw``: the input as JSON text (empty: none); without it
    ``input_`` is checked as JSON. ``on_conflict`` and ``reuse`` default to the settings';
    ``debounce`` implies bufferOne. Raises ProblemError naming the rule."""
    check_function_name(function_name, catalog.names)
    check_instance_id(instance_id)
    chosen = effective_on_conflict(on_conflict, settings.on_conflict, debounce)
    check_replacement(catalog, function_name, chosen)
    if raw is None:
        raw = _as_json(input_)
    input_ = _checked_input(catalog, settings, function_name, raw, None)
    if chosen is OnConflict.BUFFER_ONE:
        check_next_run(catalog, function_name, key)
    policy = reuse or settings.reuse
    keyed = None
    if key is not None:
        parts = {
            "function": function_name,
            "instance": instance_id,
            "onConflict": chosen.value,
            "reuse": policy.value,
        }
        keyed = keyed_request(key, parts, raw)
    return StartRequest(function_name, instance_id, input_, chosen, policy, keyed, debounce)


@dataclass(frozen=True)
class LimitedStart:
    """A start with a limit per key that passed every check: ``limit`` slots for
    ``key``, ``bound`` requests at most waiting, ``reject`` (``onFull=reject``) to refuse
    instead of queuing."""

    function_name: str
    key: str
    input: Any
    limit: int
    bound: int
    on_full: OnFull = OnFull.QUEUE
    #: The request's Idempotency-Key and fingerprint, when it carried a key.
    keyed: Optional[KeyedRequest] = None


def checked_limited_start(
    catalog: Catalog,
    settings: Settings,
    function_name: str,
    key: str,
    *,
    raw: Optional[bytes] = None,
    input_: Any = None,
    on_full: OnFull = OnFull.QUEUE,
    idempotency_key: Optional[str] = None,
) -> LimitedStart:
    """The one constructor of a start with a limit per key (the route's and the
    library's): the orchestrator has a limit, the key makes valid slot ids, the input is
    JSON its rule takes. Raises ProblemError naming the rule."""
    check_function_name(function_name, catalog.names)
    limit = catalog.limit(function_name)
    if limit is None:
        raise ProblemError(problems.no_limit(function_name))
    try:
        check_instance_id(slot_id(key, limit - 1))
    except ProblemError as refused:
        rule = refused.problem.detail.replace("instance id", "key (with its slot suffix)")
        raise problems.refusal("invalid-key", rule) from None
    if raw is None:
        raw = _as_json(input_)
    checked = _checked_input(catalog, settings, function_name, raw, None)
    keyed = None
    if idempotency_key is not None:
        parts = {"function": function_name, "key": key, "onFull": on_full.value}
        keyed = keyed_request(idempotency_key, parts, raw)
    return LimitedStart(function_name, key, checked, limit, settings.queue_bound, on_full, keyed)


def _checked_input(
    catalog: Catalog, settings: Settings, function_name: str, raw: Optional[bytes], input_: Any
) -> Any:
    """The input of a start: ``raw`` JSON text (a body, a setting; empty: no input), or
    ``input_`` checked as JSON; then the orchestrator's input rule."""
    checked = read_json_body(_as_json(input_) if raw is None else raw, settings.max_body_bytes)
    check_input(catalog, function_name, checked)
    return checked


def _as_json(input_: Any) -> bytes:
    """An input given as a value, as the JSON text a body would carry (400 if not JSON)."""
    try:
        return json.dumps(input_, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError):
        raise problems.refusal("invalid-body", "The input is not JSON.") from None


def effective_on_conflict(
    given: Optional[OnConflict], default: OnConflict, debounce: Optional[Debounce]
) -> OnConflict:
    """The onConflict a start runs with: ``given``, else ``default``; a debounced start
    is bufferOne, and one that names another onConflict is a 400 problem (the one rule
    for the route and for :meth:`SingletonClient.start`)."""
    if debounce is None:
        return given or default
    if given is not None and given is not OnConflict.BUFFER_ONE:
        raise problems.refusal(
            "conflicting-parameters",
            "debounceSeconds runs the request after the active instance's run, "
            "as onConflict=bufferOne does; it cannot be combined with "
            f"onConflict={given.value}.",
        )
    return OnConflict.BUFFER_ONE


def debounce_of(seconds: Optional[int], max_seconds: Optional[int]) -> Optional[Debounce]:
    """The debounce of a request (None when ``seconds`` is None), each bound checked
    (a 400 problem); ``max_seconds`` defaults to 10 times ``seconds``."""
    if seconds is None:
        if max_seconds is not None:
            raise problems.refusal(
                "conflicting-parameters", "debounceMaxSeconds needs debounceSeconds."
            )
        return None
    if not MIN_DEBOUNCE_SECONDS <= seconds <= MAX_DEBOUNCE_SECONDS:
        raise ProblemError(
            problems.invalid_number_query(
                "debounceSeconds", MIN_DEBOUNCE_SECONDS, MAX_DEBOUNCE_SECONDS
            )
        )
    if max_seconds is None:
        max_seconds = min(seconds * DEBOUNCE_MAX_FACTOR, MAX_DEBOUNCE_MAX_SECONDS)
    if not seconds <= max_seconds <= MAX_DEBOUNCE_MAX_SECONDS:
        raise ProblemError(
            problems.invalid_number_query("debounceMaxSeconds", seconds, MAX_DEBOUNCE_MAX_SECONDS)
        )
    return Debounce(seconds, max_seconds)


def check_next_run(catalog: Catalog, function_name: str, key: Optional[str]) -> None:
    """A bufferOne or debounced request needs an orchestrator that takes next runs, and
    no Idempotency-Key (a key's replay is of a start; a next run is not one)."""
    if not catalog.accepts_next_run(function_name):
        raise ProblemError(problems.next_run_not_supported(function_name))
    if key is not None:
        raise problems.refusal(
            "conflicting-parameters",
            "An Idempotency-Key cannot be combined with onConflict=bufferOne or "
            "debounceSeconds; send the request without it (its answer's requestId "
            "shows in the instance's status as its run once its input runs).",
        )


def check_stop(catalog: Catalog, function_name: str, instead: str) -> None:
    """A graceful Stop needs an orchestrator that takes one (a 400 problem naming
    ``instead``, the request's way to terminate it, when it does not)."""
    if not catalog.accepts_stop(function_name):
        raise ProblemError(problems.stop_not_supported(function_name, instead))


def check_replacement(catalog: Catalog, function_name: str, on_conflict: OnConflict) -> None:
    """``onConflict=stopExisting`` needs an orchestrator that takes a graceful Stop."""
    if on_conflict is OnConflict.STOP_EXISTING:
        check_stop(catalog, function_name, "onConflict=terminateExisting")


def check_input(catalog: Catalog, function_name: str, value: Any) -> None:
    """Raise a 400 problem when the orchestrator's own rule refuses ``value``, or when an
    orchestrator that takes next runs is given anything but an object (the app adds its
    member ``run``, which the caller may not set)."""
    rule = catalog.rule(function_name)
    if rule is not None:
        try:
            rule(value)
        except InvalidInput as error:
            raise problems.refusal("invalid-input", str(error)) from None
    if catalog.accepts_next_run(function_name) and not (
        value is None or (isinstance(value, dict) and "run" not in value)
    ):
        raise problems.refusal(
            "invalid-input",
            f"{function_name} takes next runs: its input is a JSON object (or no body), "
            "without the member run, which the app sets.",
        )


def check_function_name(name: str, orchestrators: Collection[str]) -> str:
    """Return ``name`` if it is one of ``orchestrators``; otherwise raise a 404 problem."""
    if name not in orchestrators:
        raise ProblemError(problems.unknown_orchestrator(name, orchestrators))
    return name


def check_instance_id(value: str) -> str:
    """Return ``value`` if it is a safe instance id; otherwise raise a 400 problem."""
    if not value:
        reason = "The instance id is empty."
    elif len(value) > MAX_INSTANCE_ID_LENGTH:
        reason = f"The instance id is {len(value)} characters long."
    elif value.startswith("@"):
        reason = "The instance id starts with @."
    elif not _INSTANCE_ID.fullmatch(value):
        reason = "The instance id holds a character that is not allowed."
    elif set(value) == {"."}:
        # "." and ".." are path segments: the HTTP client would resolve them away
        # and call another URL of the Durable API.
        reason = "The instance id is made of dots only."
    else:
        return value
    raise problems.refusal("invalid-instance-id", f"{reason} {INSTANCE_ID_RULE}")


def read_json_body(raw: bytes, limit: int) -> Any:
    """Decode a UTF-8 JSON body of at most ``limit`` bytes; None when empty or ``null`` (the
    SDK cannot send a null input). What it returns round-trips through the SDK: finite
    numbers, integers of at most :data:`MAX_INTEGER_DIGITS` digits, nesting at most
    :data:`MAX_NESTING_DEPTH` deep."""
    if len(raw) > limit:
        raise ProblemError(problems.body_too_large(limit))
    if not raw.strip():
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise problems.refusal(
            "invalid-body", f"The request body is not valid UTF-8 (byte {error.start})."
        ) from None
    try:
        document = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
            object_hook=_refuse_envelope,
        )
    except _Refused as refused:
        raise problems.refusal("invalid-body", str(refused)) from None
    except json.JSONDecodeError as error:
        raise problems.refusal(
            "invalid-body",
            "The request body is not valid JSON (error at line "
            f"{error.lineno}, column {error.colno}).",
        ) from None
    except RecursionError:
        raise problems.refusal("invalid-body", _TOO_DEEP) from None
    if _depth(document) > MAX_NESTING_DEPTH:
        raise problems.refusal("invalid-body", _TOO_DEEP)
    return document


#: The deepest nesting of arrays and objects a body may have. The SDK's serializer
#: recurses per level (and overflows the stack near a thousand); real inputs need few.
MAX_NESTING_DEPTH = 64


#: The most digits an integer in the body may have. Python refuses to convert longer
#: integers to text (``sys.set_int_max_str_digits``), so longer ones could not be sent.
MAX_INTEGER_DIGITS = 100


_TOO_DEEP = (
    f"The request body is nested too deeply: at most {MAX_NESTING_DEPTH} levels "
    "of arrays and objects."
)


class _Refused(ValueError):
    """A value the body may not hold; the message says which rule it breaks."""


def _refuse_constant(name: str) -> Any:
    raise _Refused("The request body holds NaN or Infinity, which JSON does not allow.")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):  # 1e400 is valid JSON but overflows a double to Infinity
        raise _Refused(
            f"The request body holds a number too large for a double ({_excerpt(literal)})."
        )
    return value


def _bounded_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _Refused(
            f"The request body holds an integer of more than {MAX_INTEGER_DIGITS} digits."
        )
    return int(literal)


def _excerpt(literal: str, limit: int = 24) -> str:
    return literal if len(literal) <= limit else literal[:limit] + "..."


def _depth(document: Any) -> int:
    """How deeply arrays and objects nest in ``document`` (a scalar is 0), without
    recursion."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def _refuse_envelope(document: Dict[str, Any]) -> Dict[str, Any]:
    # The SDK's loose JSON codec rebuilds such an object as an instance of any class
    # the worker has imported: caller input must not be able to do that.
    if _ENVELOPE_KEYS <= document.keys():
        raise _Refused(
            "The request body holds an object with __class__, __module__ and __data__ "
            "members; the Durable SDK would turn it into a Python object. Rename them."
        )
    return document


_ENVELOPE_KEYS = {"__class__", "__module__", "__data__"}
