"""SingletonNextRun: a job's side of run once more (docs/jobs.md).

When a run of SingletonOrchestrator ends, it takes its next run from the id's next-run
channel in the app's storage account through this activity (and a debounced run, when
its timer fires, reads there whether it is due).
"""

from typing import Any, Dict

from singleton_app import app


async def main(request: Dict[str, Any]) -> Any:
    """Carry out one ``take`` or ``begin`` request of the orchestrator."""
    return await app.next_run(request)
