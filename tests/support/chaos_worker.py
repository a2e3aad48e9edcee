"""One app instance in the chaos run: callers starting random ids for a fixed time.

Run as ``python -m tests.support.chaos_worker RPC_BASE_URL IDS CALLERS SECONDS START_AT
SEED`` with the app settings (storage connection, lock container, timeouts) in the
environment. From START_AT (wall clock), CALLERS concurrent loops each start one of
the comma-separated IDS after another until SECONDS have passed (the last id is
started by the debounce callers only); every start carries
a token of its own as its only item, so the run's checker can tell which caller's
start created which instance. The callers, by their number modulo 7: plain starts
(0); ``onConflict=bufferOne`` (1); ``debounceSeconds=1`` (3); a stopper that asks to
stop a random id now and then, and a third of the time terminates a random slot of
:data:`TERMINATED_KEY` instead, asking again after a 503 (4); callers that send an
Idempotency-Key (2, 5, one key per token), retrying with it after every 503, every 409
``idempotency-key-in-progress`` and after their first 202, which they treat as lost,
until they get another answer or 40 tries have passed; and a burst caller (6) that sends
bursts of :data:`BURST` bufferOne or debounced requests for one id, one every
:data:`BURST_PAUSE` seconds; and a limited caller (7) that starts SingletonOrchestrator
for one of :data:`LIMIT_KEYS` (limit 3 per key) and now and then cancels a request told
``queued``. Prints one JSON list of ``[instance id, token, status code, problem kind or
"", key or "", replayed, mode, outcome, requestId, dueAt, droppedRequestId,
replacedRequestId]`` (a limited caller's answers add its key and the times the request was
sent and answered), one per answer, in order.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import uuid
from typing import Any, List, Optional

import HttpStartLimited
import HttpStartSingle
import LimitedRequest
import SingletonInstance
from tests.support.durable_double import starter_binding
from tests.support.requests import (
    instance_request,
    limited_request,
    queued_request,
    start_request,
)

#: The tries a keyed caller makes for one start at most.
KEYED_TRIES = 40

#: Each caller's kind, by its number modulo 8, and the query its starts carry.
KINDS = ["plain", "bufferOne", "keyed", "debounce", "stopper", "keyed", "burst", "limited"]
#: The keys the limited callers start SingletonOrchestrator for (its limit: 3 per key).
LIMIT_KEYS = ["tenant-x", "tenant-y"]
#: The key whose slots the stoppers terminate now and then (the other key's requests
#: are each owed exactly one run; this one's at most one).
TERMINATED_KEY = "tenant-y"
#: The share of a stopper's requests that terminate a slot of TERMINATED_KEY, and the
#: tries a slot terminate gets while it is answered 503.
SLOT_TERMINATE_SHARE = 1 / 3
SLOT_TERMINATE_TRIES = 5
#: How often a limited caller cancels a request it was told is queued.
CANCEL_SHARE = 0.2
#: A burst caller's requests for one id in a row, and the pause between two.
BURST = 40
BURST_PAUSE = 0.01
QUERIES = {"bufferOne": "onConflict=bufferOne", "debounce": "debounceSeconds=1"}


def _recorded(response: Any, instance_id: str, token: str, key: str, mode: str) -> List[Any]:
    """An answer as the run records it."""
    body = json.loads(response.get_body() or b"{}")
    problem = body["type"].rsplit(":", 1)[1] if response.status_code >= 400 else ""
    replayed = response.headers.get("Idempotent-Replayed") == "true"
    return [
        instance_id,
        token,
        response.status_code,
        problem,
        key,
        replayed,
        mode,
        body.get("outcome", ""),
        body.get("requestId", ""),
        body.get("dueAt", ""),
        body.get("droppedRequestId", ""),
        body.get("replacedRequestId", ""),
    ]


async def ask(starter: str, instance_id: str, token: str, key: str, mode: str) -> List[Any]:
    """One start request; its answer as the run records it."""
    headers = {"Idempotency-Key": key} if key else None
    request = start_request(
        "SingletonOrchestrator",
        instance_id,
        {"items": [token]},
        QUERIES.get(mode, ""),
        headers=headers,
    )
    response = await HttpStartSingle.main(request, starter)
    return _recorded(response, instance_id, token, key, mode)


async def ask_limited(starter: str, key: str, token: str) -> List[Any]:
    """One start with a limit for ``key``; its answer as the run records it, with the
    slot's instance id in place of the key when it started, and then the times the
    request was sent and answered (wall clock)."""
    sent = time.time()
    request = limited_request("SingletonOrchestrator", key, {"items": [token]})
    response = await HttpStartLimited.main(request, starter)
    answered = time.time()
    recorded = _recorded(response, key, token, "", "limited")
    body = json.loads(response.get_body() or b"{}")
    if body.get("outcome") == "started":
        recorded[0] = body["id"]
    return [*recorded, key, sent, answered]


async def cancel(starter: str, key: str, token: str, request_id: str) -> List[Any]:
    """A DELETE of a queued request; recorded under ``cancel:<token>`` (a request's own
    answers stay the last under its token)."""
    request = queued_request("DELETE", "SingletonOrchestrator", key, request_id)
    response = await LimitedRequest.main(request, starter)
    recorded = _recorded(response, key, f"cancel:{token}", "", "cancel")
    recorded[8] = request_id
    body = json.loads(response.get_body() or b"{}")
    recorded[7] = body.get("state", "")
    return [*recorded, key, 0.0, 0.0]


async def stop(starter: str, instance_id: str, query: str = "") -> List[Any]:
    """One stop request (DELETE, ``query`` its mode); its answer as the run records it."""
    request = instance_request("DELETE", "SingletonOrchestrator", instance_id, query)
    response = await SingletonInstance.main(request, starter)
    mode = "slot-terminate" if query else "stopper"
    return _recorded(response, instance_id, "", "", mode)


def retry_after(answer: List[Any], rng: random.Random) -> Optional[float]:
    """How long a keyed caller waits before it asks again; None: it has its answer."""
    code, problem = answer[2], answer[3]
    if code == 503 or problem == "idempotency-key-in-progress":
        return rng.uniform(0.2, 1.0)
    if code == 202 and not answer[5]:
        return 0.0  # the 202 was "lost" on the way back: ask again
    return None


async def caller(
    starter: str,
    ids: List[str],
    until: float,
    rng: random.Random,
    answers: List[list],
    kind: str,
) -> None:
    """Start random ids, one after another, until ``until``; a keyed caller finishes
    its last start's retries after that. A stopper asks to stop one now and then."""
    keyed = kind == "keyed"
    # The last id is the debounce callers' own: there a debounced request finds the id
    # idle or its run still waiting, and is answered ``debounced`` (on the busy ids it
    # mostly becomes the next run, ``buffered``), so every run exercises both answers.
    choices = ids if kind == "debounce" else ids[:-1]
    while time.time() < until:
        instance_id = rng.choice(choices)
        if kind == "stopper":
            if rng.random() < SLOT_TERMINATE_SHARE:
                slot = f"{TERMINATED_KEY}~{rng.randrange(3)}"
                for _ in range(SLOT_TERMINATE_TRIES):  # as an operator would, after a 503
                    answer = await stop(starter, slot, "mode=terminate")
                    answers.append(answer)
                    if answer[2] != 503:
                        break
                    await asyncio.sleep(rng.uniform(0.2, 0.5))
            else:
                answers.append(await stop(starter, instance_id))
            await asyncio.sleep(rng.uniform(0.5, 1.5))
            continue
        if kind == "limited":
            key, token = rng.choice(LIMIT_KEYS), uuid.uuid4().hex
            answer = await ask_limited(starter, key, token)
            answers.append(answer)
            if answer[7] == "queued" and rng.random() < CANCEL_SHARE:
                await asyncio.sleep(rng.uniform(0.0, 0.5))
                answers.append(await cancel(starter, key, token, answer[8]))
            await asyncio.sleep(rng.uniform(0.0, 0.1))
            continue
        if kind == "burst":
            for _ in range(BURST):
                mode = rng.choice(["bufferOne", "debounce"])
                answer = await ask(starter, instance_id, uuid.uuid4().hex, "", mode)
                answers.append([*answer[:6], "burst", *answer[7:]])
                await asyncio.sleep(BURST_PAUSE)
            continue
        token = uuid.uuid4().hex
        key = f"key-{token}" if keyed else ""
        for _ in range(KEYED_TRIES if keyed else 1):
            answer = await ask(starter, instance_id, token, key, kind)
            answers.append(answer)
            pause = retry_after(answer, rng) if keyed else None
            if pause is None:
                break
            await asyncio.sleep(pause)
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
            caller(
                starter,
                ids,
                start_at + seconds,
                random.Random(rng.random()),
                answers,
                KINDS[n % len(KINDS)],
            )
            for n in range(callers)
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
