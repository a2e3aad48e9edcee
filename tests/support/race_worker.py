"""One app instance in a race: a burst of start requests for one id at a set moment.

Run as ``python -m tests.support.race_worker RPC_BASE_URL INSTANCE_ID COUNT START_AT``
with the app settings (storage connection, lock container) in the environment. It
waits until the wall clock reaches START_AT (so every process fires together), calls
``HttpStartSingle.main`` COUNT times at once, and prints the status codes as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import List

import HttpStartSingle
from tests.support.durable_double import starter_binding
from tests.support.requests import start_request


async def race(rpc_base_url: str, instance_id: str, count: int, start_at: float) -> List[int]:
    """Fire ``count`` concurrent starts for ``instance_id`` at ``start_at``."""
    starter = starter_binding(rpc_base_url)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    responses = await asyncio.gather(
        *[
            HttpStartSingle.main(
                start_request("SingletonOrchestrator", instance_id, {"items": []}), starter
            )
            for _ in range(count)
        ]
    )
    return [response.status_code for response in responses]


if __name__ == "__main__":
    url, instance, how_many, moment = sys.argv[1:5]
    print(json.dumps(asyncio.run(race(url, instance, int(how_many), float(moment)))))
