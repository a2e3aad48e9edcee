"""One app instance in the chaos run: callers starting random ids for a fixed time.

Run as ``python -m tests.support.chaos_worker RPC_BASE_URL IDS CALLERS SECONDS START_AT
SEED`` with the app settings (storage connection, lock container, timeouts) in the
environment. From START_AT (wall clock), CALLERS concurrent loops each start one of
the comma-separated IDS after another until SECONDS have passed; every start carries
a token of its own as its only item, so the run's checker can tell which caller's
start created which instance. Prints one JSON list of
``[instance id, token, status code, problem kind or ""]``.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import uuid
from typing import List

import HttpStartSingle
from tests.support.durable_double import starter_binding
from tests.support.requests import start_request


async def caller(
    starter: str, ids: List[str], until: float, rng: random.Random, answers: List[list]
) -> None:
    """Start random ids, one after another, until ``until``."""
    while time.time() < until:
        instance_id = rng.choice(ids)
        token = uuid.uuid4().hex
        response = await HttpStartSingle.main(
            start_request("SingletonOrchestrator", instance_id, {"items": [token]}), starter
        )
        problem = ""
        if response.status_code >= 400:
            problem = json.loads(response.get_body())["type"].rsplit(":", 1)[1]
        answers.append([instance_id, token, response.status_code, problem])
        await asyncio.sleep(rng.uniform(0.0, 0.2))


async def run(
    rpc_base_url: str, ids: List[str], callers: int, seconds: float, start_at: float, seed: int
) -> List[list]:
    """Run the callers and return every answer."""
    starter = starter_binding(rpc_base_url)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    answers: List[list] = []
    rng = random.Random(seed)
    await asyncio.gather(
        *[
            caller(starter, ids, start_at + seconds, random.Random(rng.random()), answers)
            for _ in range(callers)
        ]
    )
    return answers


if __name__ == "__main__":
    url, id_list, how_many, duration, moment, seed = sys.argv[1:7]
    print(
        json.dumps(
            asyncio.run(
                run(
                    url,
                    id_list.split(","),
                    int(how_many),
                    float(duration),
                    float(moment),
                    int(seed),
                )
            )
        )
    )
