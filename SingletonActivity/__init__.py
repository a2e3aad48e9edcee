"""SingletonActivity: the unit of real work, one item at a time.

This is the extension point. Replace the body of :func:`main` with the job's real
work (call an API, import a file, rebuild a cache entry). It may do I/O and take its
time; the orchestrator calls it once per item, in order. Runs of one job id do not
overlap under the default policies; ``onConflict=terminateExisting`` may let an old
run's item in flight overlap the new run's first (see docs/jobs.md,
"Replacing a running job"). Keep its result JSON-serializable: the orchestrator
collects the results into its output, which the status URL shows.
"""

import logging
from typing import Any, Dict

logger = logging.getLogger("singleton.activity")


def main(work: Dict[str, Any]) -> Dict[str, Any]:
    """Process one item.

    Parameters
    ----------
    work : dict
        ``{"item": <any JSON value>, "index": <position in this pass>}``.

    Returns
    -------
    dict
        ``{"index", "item", "status"}``: which item was handled and how it went.
    """
    item, index = work.get("item"), work.get("index")
    logger.info("SingletonActivity processing item %s", index)
    return {"index": index, "item": item, "status": "processed"}
