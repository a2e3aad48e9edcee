"""The URLs an answer gives for an instance: the Durable extension's (the default; they
carry its system key), or with ``SINGLETON_MANAGEMENT_LINKS=app`` this app's own endpoints,
reached with the caller's function key, so the system key never leaves the app."""

from __future__ import annotations

import enum
from typing import Callable, Dict
from urllib.parse import quote, urlsplit, urlunsplit

import azure.functions as func

from ._durable import Binding

#: instance id -> the URLs an answer names for it (``id`` and ``statusQueryGetUri``
#: always among them).
Links = Callable[[str], Dict[str, str]]


class LinkMode(str, enum.Enum):
    """What the answers' URLs point at (app setting ``SINGLETON_MANAGEMENT_LINKS``)."""

    DURABLE = "durable"
    APP = "app"


def links_for(mode: LinkMode, req: func.HttpRequest, binding: Binding) -> Links:
    """The URLs for answers to ``req``, on the origin the caller used."""
    if mode is LinkMode.DURABLE:
        return lambda instance_id: binding.links(instance_id, req.url)
    return app_links(req.url)


def list_links(mode: LinkMode, req: func.HttpRequest, binding: Binding, instances: str) -> Links:
    """The URLs for the instances a list request (``/api/singletons/{fn}``) names: each
    instance's resource is ``instances`` (the path of this app's instance routes,
    ``/api/orchestrators/``), the orchestrator's name and the id."""
    if mode is LinkMode.DURABLE:
        return lambda instance_id: binding.links(instance_id, req.url)
    parts = urlsplit(req.url)
    name = quote(req.route_params.get("functionName", ""), safe="")
    collection = urlunsplit((parts.scheme, parts.netloc, f"{instances}{name}", "", ""))
    return lambda instance_id: app_links(f"{collection}/{quote(instance_id, safe='')}")(
        instance_id
    )


def host_links(binding: Binding) -> Links:
    """The Durable extension's URLs on the host's own origin, for work with no request to
    answer (a timer tick, whose problems are only logged)."""
    return binding.links


def app_links(request_url: str) -> Links:
    """This app's own status and stop URLs for the id a request URL names.

    The request's own path is the instance's resource (``/api/orchestrators/{fn}/{id}``,
    whatever the route prefix): GET reads it, DELETE stops it.
    """
    parts = urlsplit(request_url)
    resource = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))

    def links(instance_id: str) -> Dict[str, str]:
        return {
            "id": instance_id,
            "statusQueryGetUri": resource,
            "stopDeleteUri": resource,
            "terminateDeleteUri": f"{resource}?mode=terminate",
        }

    return links
