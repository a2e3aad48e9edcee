"""Lines a test wants shown at the end of the run, whatever its outcome.

The race tests put here how many callers each starter told "started", so the
pytest summary shows the seed's check-then-start next to ours.
"""

from typing import List

LINES: List[str] = []


def report(line: str) -> None:
    """Add ``line`` to the summary printed after the tests."""
    LINES.append(line)
