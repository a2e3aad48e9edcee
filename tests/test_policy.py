"""The decision table: every status (and no instance) x every onConflict x every reuse."""

from __future__ import annotations

import itertools

import pytest
from azure.durable_functions import OrchestrationRuntimeStatus as Status

from durable_singleton._policy import (
    ACTIVE,
    FINISHED,
    Action,
    OnConflict,
    Reuse,
    decide,
    must_recheck_under_lock,
)

START, REJECT_ACTIVE, USE, REPLACE, STOP, REJECT_FINISHED, BUFFER = (
    Action.START,
    Action.REJECT_ACTIVE,
    Action.USE_EXISTING,
    Action.TERMINATE_THEN_START,
    Action.STOP_THEN_START,
    Action.REJECT_FINISHED,
    Action.BUFFER,
)

# Written out by hand, one row per status: the answer for each (onConflict, reuse).
# Columns: reject/allowDuplicate, reject/allowDuplicateFailedOnly, reject/rejectDuplicate,
#          useExisting/..., terminateExisting/..., stopExisting/..., bufferOne/... (same
#          three reuse columns each).
TABLE = {
    None: [START] * 15,
    "Pending": [REJECT_ACTIVE] * 3 + [USE] * 3 + [REPLACE] * 3 + [STOP] * 3 + [BUFFER] * 3,
    "Running": [REJECT_ACTIVE] * 3 + [USE] * 3 + [REPLACE] * 3 + [STOP] * 3 + [BUFFER] * 3,
    "ContinuedAsNew": [REJECT_ACTIVE] * 3 + [USE] * 3 + [REPLACE] * 3 + [STOP] * 3 + [BUFFER] * 3,
    "Suspended": [REJECT_ACTIVE] * 3 + [USE] * 3 + [REPLACE] * 3 + [STOP] * 3 + [BUFFER] * 3,
    "Completed": [START, REJECT_FINISHED, REJECT_FINISHED] * 5,
    "Failed": [START, START, REJECT_FINISHED] * 5,
    "Terminated": [START, START, REJECT_FINISHED] * 5,
    "Canceled": [START, START, REJECT_FINISHED] * 5,
}
COLUMNS = list(
    itertools.product(
        ["reject", "useExisting", "terminateExisting", "stopExisting", "bufferOne"],
        ["allowDuplicate", "allowDuplicateFailedOnly", "rejectDuplicate"],
    )
)

CASES = [
    (status, on_conflict, reuse, row[i])
    for status, row in TABLE.items()
    for i, (on_conflict, reuse) in enumerate(COLUMNS)
]


def test_table_covers_every_status_and_choice() -> None:
    assert {s for s in TABLE if s} == {s.value for s in Status}
    assert len(CASES) == 9 * 5 * 3
    assert {c for c, _ in COLUMNS} == {m.value for m in OnConflict}
    assert {r for _, r in COLUMNS} == {m.value for m in Reuse}


@pytest.mark.parametrize("status,on_conflict,reuse,expected", CASES)
def test_decision(status: str, on_conflict: str, reuse: str, expected: Action) -> None:
    runtime_status = Status(status) if status else None
    assert decide(runtime_status, OnConflict(on_conflict), Reuse(reuse)) is expected


def test_every_status_is_active_or_finished_not_both() -> None:
    assert ACTIVE | FINISHED == set(Status)
    assert not ACTIVE & FINISHED


@pytest.mark.parametrize("action", list(Action))
def test_only_start_replace_and_buffer_take_the_lock(action: Action) -> None:
    assert action.starts == (action in (START, REPLACE, STOP))
    assert action.takes_lock == (action in (START, REPLACE, STOP, BUFFER))


# The second status read under the lock is skipped only where the extension's own
# duplicate refusal gives the same answer as decide(): a plain start with
# allowDuplicate and an onConflict that starts nothing.
RECHECK = [
    (START, OnConflict.REJECT, Reuse.ALLOW_DUPLICATE, False),
    (START, OnConflict.USE_EXISTING, Reuse.ALLOW_DUPLICATE, False),
    (START, OnConflict.TERMINATE_EXISTING, Reuse.ALLOW_DUPLICATE, True),
    (START, OnConflict.REJECT, Reuse.ALLOW_DUPLICATE_FAILED_ONLY, True),
    (START, OnConflict.REJECT, Reuse.REJECT_DUPLICATE, True),
    (START, OnConflict.USE_EXISTING, Reuse.REJECT_DUPLICATE, True),
    (REPLACE, OnConflict.TERMINATE_EXISTING, Reuse.ALLOW_DUPLICATE, True),
    (REPLACE, OnConflict.TERMINATE_EXISTING, Reuse.REJECT_DUPLICATE, True),
    (START, OnConflict.STOP_EXISTING, Reuse.ALLOW_DUPLICATE, True),
    (STOP, OnConflict.STOP_EXISTING, Reuse.ALLOW_DUPLICATE, True),
    (START, OnConflict.BUFFER_ONE, Reuse.ALLOW_DUPLICATE, True),
    (BUFFER, OnConflict.BUFFER_ONE, Reuse.ALLOW_DUPLICATE, True),
]


@pytest.mark.parametrize("action,on_conflict,reuse,expected", RECHECK)
def test_recheck_under_lock(
    action: Action, on_conflict: OnConflict, reuse: Reuse, expected: bool
) -> None:
    assert must_recheck_under_lock(action, on_conflict, reuse) is expected


@pytest.mark.parametrize("on_conflict", [OnConflict.REJECT, OnConflict.USE_EXISTING])
def test_skipping_the_recheck_agrees_with_the_extensions_refusal(on_conflict: OnConflict) -> None:
    """Where the recheck is skipped, decide() starts exactly when the extension would."""
    for status in [None, *Status]:
        extension_starts = status is None or status in FINISHED
        assert decide(status, on_conflict, Reuse.ALLOW_DUPLICATE).starts is extension_starts
