"""The sample job SingletonOrchestrator runs (docs/jobs.md): :func:`run_job`, for
``df.Orchestrator.create``; :func:`parse_job_input`, its input rule; and
:func:`item_store`, its SingletonItemStore activity. An app that guards orchestrators
of its own needs none of them: the core names nothing of the job."""

from __future__ import annotations

from typing import Any, Mapping

from .._app import SingletonApp
from ._items import handle
from ._run import parse_job_input, run_job

__all__ = ["item_store", "parse_job_input", "run_job"]


async def item_store(app: SingletonApp, request: Mapping[str, Any]) -> Any:
    """Carry out one request of the job's SingletonItemStore activity (``stage``,
    ``load`` or ``delete``) in ``app``'s storage account."""
    return await handle(app._root(), dict(request))
