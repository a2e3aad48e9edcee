"""A large job's items, kept in blobs while the job runs (SingletonItemStore).

A job of more items than one execution processes (see :mod:`durable_singleton.job._run`) would
otherwise carry all of them in every execution's input, and every episode would
read them all again. They are written once, in blocks of :data:`BLOCK_ITEMS`, under
``<instance id>/<key>/`` in the job container; each execution loads its share, and
the job deletes them when it ends. A job that is terminated or fails leaves its
blobs behind: the retention timer (durable_singleton._retention), or a lifecycle rule on
the container (docs/jobs.md), removes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, Dict, List

from azure.core.exceptions import ResourceNotFoundError

from .._root import Root

#: Items per blob: a load reads at most two blobs for one execution's share.
BLOCK_ITEMS = 1000


async def handle(root: Root, request: Dict[str, Any]) -> Any:
    """Carry out one request of the orchestrator.

    Parameters
    ----------
    root : Root
        The composition root: the settings and the Blob Storage client.
    request : dict
        ``{"op": "stage", "instanceId", "key", "items"}`` returns ``{"store"}``;
        ``{"op": "load", "store", "start", "count"}`` returns the items;
        ``{"op": "delete", "store"}`` returns None.

    Returns
    -------
    Any
        As above. Every operation may be retried by the runtime: staging the same
        key writes the same blobs, deleting twice is deleting once.
    """
    container = root.container(root.settings.job_container)
    op = request["op"]
    if op == "stage":
        return await _stage(container, request["instanceId"], request["key"], request["items"])
    if op == "load":
        return await _load(container, request["store"], request["start"], request["count"])
    if op == "delete":
        await _delete(container, request["store"])
        return None
    raise ValueError(f"unknown item store operation {op!r}")


def _block_name(store: str, block: int) -> str:
    return f"{store}/{block:08d}.json"


async def _stage(container: Any, instance_id: str, key: str, items: List[Any]) -> Dict[str, str]:
    store = f"{instance_id}/{key}"
    blocks = [items[i : i + BLOCK_ITEMS] for i in range(0, len(items), BLOCK_ITEMS)]
    try:
        await _write(container, _block_name(store, 0), blocks[0] if blocks else [])
    except ResourceNotFoundError:  # the container is missing: first use of the app
        await container.create_container()
        await _write(container, _block_name(store, 0), blocks[0] if blocks else [])
    # A few blocks at a time: a 1 MiB job is a handful of blobs.
    for first in range(1, len(blocks), 8):
        await asyncio.gather(
            *[
                _write(container, _block_name(store, n), blocks[n])
                for n in range(first, min(first + 8, len(blocks)))
            ]
        )
    return {"store": store}


async def _write(container: Any, name: str, items: List[Any]) -> None:
    await container.upload_blob(name, json.dumps(items).encode("utf-8"), overwrite=True)


async def _load(container: Any, store: str, start: int, count: int) -> List[Any]:
    first, last = start // BLOCK_ITEMS, (start + count - 1) // BLOCK_ITEMS
    items: List[Any] = []
    for block in range(first, last + 1):
        data = await (await container.download_blob(_block_name(store, block))).readall()
        items.extend(json.loads(data))
    offset = start - first * BLOCK_ITEMS
    return items[offset : offset + count]


async def _delete(container: Any, store: str) -> None:
    async for blob in container.list_blobs(name_starts_with=f"{store}/"):
        with contextlib.suppress(ResourceNotFoundError):  # already gone: a retried delete
            await container.delete_blob(blob.name)
