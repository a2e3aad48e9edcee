"""HttpStartSingle's request: validate, start as guarded, answer."""

from __future__ import annotations

from typing import Tuple

import azure.functions as func

from . import _answers as answers
from ._invocation import Invocation
from ._starter import start_singleton
from ._validation import parse_start_request


async def start(call: Invocation) -> Tuple[func.HttpResponse, str]:
    """Answer one HttpStartSingle request (route parameters ``functionName`` and
    ``instanceId``): 202 started, 200 an existing instance used, or a problem+json answer."""
    request = parse_start_request(call.req, call.settings, call.root.catalog)
    outcome = await start_singleton(request, call.durable, call.root)
    response = answers.for_outcome(outcome, request.instance_id, call.links, request.reuse)
    return response, outcome.decision
