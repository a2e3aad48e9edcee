"""Turn an HTTP request into clean start parameters, or a problem that says what is wrong.

Nothing invalid gets past this module, so bad input never reaches the Durable runtime.
"""
from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Collection, List, Mapping, Type, TypeVar
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from . import problems
from .job import InvalidJobInput, parse_job_input
from .policy import OnConflict, Reuse
from .problems import ProblemError
from .settings import Settings

MAX_INSTANCE_ID_LENGTH = 100

#: The characters an instance id may hold. The Durable SDK pastes ids into request
#: URLs without encoding, so anything that means something in a URL (/ \ # ? % & +,
#: spaces, control characters) must never get through.
_INSTANCE_ID = re.compile(r"[A-Za-z0-9\-_.:~@]+")

INSTANCE_ID_RULE = (
    f"An instance id is 1 to {MAX_INSTANCE_ID_LENGTH} characters from ASCII letters, "
    "ASCII digits and - _ . : ~ @; it must not start with @ and must not be made of "
    "dots only.")

#: Orchestrators whose input the starter checks before starting them; an orchestrator
#: not listed here gets any JSON input.
INPUT_RULES: Mapping[str, Callable[[Any], object]] = {
    "SingletonOrchestrator": parse_job_input,
}

E = TypeVar("E", bound=enum.Enum)


@dataclass(frozen=True)
class StartRequest:
    """A start request that passed every check."""

    function_name: str
    instance_id: str
    input: Any
    on_conflict: OnConflict
    reuse: Reuse


def parse_start_request(req: func.HttpRequest, settings: Settings,
                        orchestrators: Collection[str]) -> StartRequest:
    """Check every part of a start request.

    Parameters
    ----------
    req : func.HttpRequest
        The request as the host passes it.
    settings : Settings
        The app settings (body limit, default policies).
    orchestrators : Collection[str]
        The names of this app's orchestrator functions.

    Returns
    -------
    StartRequest
        The clean values; ``input`` is None when the body is empty.

    Raises
    ------
    ProblemError
        404 for an unknown orchestrator, 413 for a body over the limit, 400 for
        anything else that is wrong.
    """
    function_name = check_function_name(req.route_params.get("functionName", ""), orchestrators)
    instance_id = check_instance_id(req.route_params.get("instanceId", ""))
    on_conflict = read_choice(req, "onConflict", OnConflict, settings.on_conflict)
    reuse = read_choice(req, "reuse", Reuse, settings.reuse)
    body = read_json_body(req.get_body() or b"", settings.max_body_bytes)
    rule = INPUT_RULES.get(function_name)
    if rule is not None:
        try:
            rule(body)
        except InvalidJobInput as error:
            raise ProblemError(problems.invalid_input(str(error))) from None
    return StartRequest(function_name, instance_id, body, on_conflict, reuse)


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
    raise ProblemError(problems.invalid_instance_id(f"{reason} {INSTANCE_ID_RULE}"))


def read_choice(req: func.HttpRequest, name: str, kind: Type[E], default: E) -> E:
    """Read query parameter ``name`` as a member of ``kind``; ``default`` when absent.

    Raises a 400 problem for a value outside ``kind`` or for a parameter repeated with
    different values.
    """
    values = set(_query_values(req, name))
    if not values:
        return default
    if len(values) == 1:
        try:
            return kind(values.pop())
        except ValueError:
            pass
    raise ProblemError(problems.invalid_query(name, [member.value for member in kind]))


def read_json_body(raw: bytes, limit: int) -> Any:
    """Decode a UTF-8 JSON body of at most ``limit`` bytes; None when it is empty.

    JSON ``null`` is the same as no body: the Durable SDK cannot send a null input.
    """
    if len(raw) > limit:
        raise ProblemError(problems.body_too_large(limit))
    if not raw.strip():
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ProblemError(problems.invalid_body(
            f"The request body is not valid UTF-8 (byte {error.start}).")) from None
    try:
        return json.loads(text, parse_constant=_refuse_constant, object_hook=_refuse_envelope)
    except _SdkEnvelope:
        raise ProblemError(problems.invalid_body(
            "The request body holds an object with __class__, __module__ and __data__ "
            "members; the Durable SDK would turn it into a Python object. Rename them."))
    except json.JSONDecodeError as error:
        raise ProblemError(problems.invalid_body(
            "The request body is not valid JSON (error at line "
            f"{error.lineno}, column {error.colno}).")) from None
    except ValueError:
        raise ProblemError(problems.invalid_body(
            "The request body holds NaN or Infinity, which JSON does not allow.")) from None
    except RecursionError:
        raise ProblemError(problems.invalid_body(
            "The request body is nested too deeply.")) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)


class _SdkEnvelope(Exception):
    """A JSON object shaped like the SDK's custom-object envelope."""


def _refuse_envelope(document: dict) -> dict:
    # The SDK's loose JSON codec rebuilds such an object as an instance of any class
    # the worker has imported: caller input must not be able to do that.
    if _ENVELOPE_KEYS <= document.keys():
        raise _SdkEnvelope()
    return document


_ENVELOPE_KEYS = {"__class__", "__module__", "__data__"}


def _query_values(req: func.HttpRequest, name: str) -> List[str]:
    """Every value of query parameter ``name``, repeats included.

    ``req.params`` keeps one value per name, so the query string of ``req.url`` is
    read instead; the host puts the whole query there. ``req.params`` is the
    fallback for a request built without one, with repeated values comma-joined.
    """
    values = [value for key, value in parse_qsl(urlsplit(req.url).query, keep_blank_values=True)
              if key == name]
    if not values and name in req.params:
        values = req.params[name].split(",")
    return values
