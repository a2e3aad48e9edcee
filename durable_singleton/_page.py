"""SingletonsPage: one self-contained HTML page that shows every singleton of the app.

It reads everything through the app's own API with the function key it was opened with
(SingletonList; SingletonInstance's DELETE to stop); the orchestrators and the schedules
with their next tick are written into it as JSON. Its Content-Security-Policy allows only
its own inline script and style (by nonce) and calls to its own origin."""

from __future__ import annotations

import datetime
import json
import secrets
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

import azure.functions as func
from croniter import croniter

from ._catalog import Catalog
from ._invocation import Invocation
from ._settings import ConfigurationError, load_schedule
from ._validation import read_whole_number
from ._waiting import utc_now

#: The page, kept beside this module.
PAGE_TEMPLATE = Path(__file__).with_name("page.html")

#: How often the page reads the lists again unless ``?refresh=`` says otherwise.
DEFAULT_REFRESH_SECONDS = 5
MAX_REFRESH_SECONDS = 300


async def page(call: Invocation) -> Tuple[func.HttpResponse, str]:
    """Answer ``GET /api/singletons`` (``routes.page``): 200 with the page (``?refresh=``
    seconds, 1 to 300, default 5), or problem+json."""
    refresh = (
        read_whole_number(call.req, "refresh", 1, MAX_REFRESH_SECONDS) or DEFAULT_REFRESH_SECONDS
    )
    now = utc_now()
    config = {
        "orchestrators": sorted(call.root.catalog.names),
        # Those offered Stop beside Terminate: the ones that wait for it.
        "stops": sorted(n for n in call.root.catalog.names if call.root.catalog.accepts_stop(n)),
        "schedules": schedule_views(call.root.catalog, call.root.environ, now),
        "refreshSeconds": refresh,
        # Where the page finds the list (+ name) and an instance (+ name/id): absolute
        # paths on its own origin, whatever the host's route prefix.
        "listPath": urlsplit(call.req.url).path.rstrip("/") + "/",
        "instancePath": call.routes.instance_paths(urlsplit(call.req.url).path, call.routes.page),
    }
    return page_response(config), "page"


def page_response(config: Mapping[str, Any]) -> func.HttpResponse:
    """The page with ``config`` written in, under a policy that allows nothing else."""
    nonce = secrets.token_urlsafe(16)
    # "<" escaped, so no value can end the script element it is written into.
    data = json.dumps(config).replace("<", "\\u003c")
    html = PAGE_TEMPLATE.read_text(encoding="utf-8")
    html = html.replace("{{NONCE}}", nonce).replace("{{CONFIG}}", data)
    policy = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return func.HttpResponse(
        body=html.encode("utf-8"),
        status_code=200,
        headers={
            "Content-Type": "text/html; charset=utf-8",
            "Content-Security-Policy": policy,
            # The page's URL holds the function key: no referrer, no cache.
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def schedule_views(
    catalog: Catalog, environ: Mapping[str, str], now: datetime.datetime
) -> List[Dict[str, Any]]:
    """Each schedule of the app as the page shows it: its settings, and its next tick
    (UTC) when it is enabled; a schedule whose settings are wrong says which."""
    views = []
    for prefix in catalog.schedules:
        expression = environ.get(prefix, "").strip()
        view: Dict[str, Any] = {"prefix": prefix, "expression": expression}
        try:
            schedule = load_schedule(prefix, environ)
        except ConfigurationError as error:
            view.update(enabled=False, problem=str(error))
            views.append(view)
            continue
        view.update(
            enabled=schedule.enabled,
            orchestrator=schedule.orchestrator,
            instanceId=schedule.instance_id,
        )
        tick = next_tick(expression, now) if schedule.enabled else None
        view["nextTick"] = tick.strftime("%Y-%m-%dT%H:%M:%SZ") if tick else None
        views.append(view)
    return views


def next_tick(expression: str, after: datetime.datetime) -> Optional[datetime.datetime]:
    """The first time after ``after`` that the six-field NCRONTAB ``expression`` (seconds
    first, as the Functions timer reads it) fires, in UTC; None for an expression this
    cannot read (the host's ``hh:mm:ss`` intervals among them)."""
    if not croniter.is_valid(expression, second_at_beginning=True):
        return None
    tick: datetime.datetime = croniter(expression, after, second_at_beginning=True).get_next(
        datetime.datetime
    )
    return tick.astimezone(datetime.timezone.utc)
