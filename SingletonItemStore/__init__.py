"""SingletonItemStore: keeps a large job's items in the app's storage account.

SingletonOrchestrator stages the items of a job larger than one execution's share
once, then loads only the items each execution processes, and deletes them when the
job ends (docs/jobs.md).
"""

from typing import Any, Dict

from durable_singleton import job
from singleton_app import app


async def main(request: Dict[str, Any]) -> Any:
    """Carry out one ``stage``, ``load`` or ``delete`` request of the orchestrator."""
    return await job.item_store(app, request)
