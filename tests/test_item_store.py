"""SingletonItemStore on a real Azurite: stage, load any share, delete, retries."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ResourceNotFoundError

import SingletonItemStore
from durable_singleton.job._items import BLOCK_ITEMS


@pytest.fixture
def jobs_container(app_env, monkeypatch) -> str:
    monkeypatch.setenv("SINGLETON_JOB_CONTAINER", app_env)  # a fresh container per test
    return app_env


async def test_stage_load_and_delete_round_trip(jobs_container) -> None:
    items = [{"n": i} for i in range(2 * BLOCK_ITEMS + 7)]
    staged = await SingletonItemStore.main(
        {"op": "stage", "instanceId": "big", "key": "k1", "items": items}
    )
    assert staged == {"store": "big/k1"}
    for start, count in [(0, 25), (BLOCK_ITEMS - 10, 25), (2 * BLOCK_ITEMS, 7), (5, 1)]:
        loaded = await SingletonItemStore.main(
            {"op": "load", "store": "big/k1", "start": start, "count": count}
        )
        assert loaded == items[start : start + count]
    assert await SingletonItemStore.main({"op": "delete", "store": "big/k1"}) is None
    assert await SingletonItemStore.main({"op": "delete", "store": "big/k1"}) is None  # retry
    with pytest.raises(ResourceNotFoundError):
        await SingletonItemStore.main({"op": "load", "store": "big/k1", "start": 0, "count": 1})


async def test_staging_again_under_the_same_key_is_the_same(jobs_container) -> None:
    request = {"op": "stage", "instanceId": "big", "key": "k2", "items": list(range(30))}
    assert await SingletonItemStore.main(request) == await SingletonItemStore.main(request)
    loaded = await SingletonItemStore.main(
        {"op": "load", "store": "big/k2", "start": 25, "count": 5}
    )
    assert loaded == [25, 26, 27, 28, 29]


async def test_an_unknown_operation_fails_the_activity(jobs_container) -> None:
    with pytest.raises(ValueError):
        await SingletonItemStore.main({"op": "drop"})
