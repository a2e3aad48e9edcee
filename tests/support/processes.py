"""Separate Python processes as separate app instances, for the multi-process tests."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import List, Mapping, Optional

from tests.support.azurite import PROJECT_ROOT


class AppProcesses:
    """Python processes started in the project root with the app importable."""

    def __init__(self) -> None:
        """None started yet."""
        self._workers: List[asyncio.subprocess.Process] = []

    async def start(self, *argv: str, env: Optional[Mapping[str, str]] = None) -> None:
        """Start ``python argv...`` (``-m module ...`` or ``-c script ...``) with the test's
        environment, plus ``env``."""
        self._workers.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                *argv,
                cwd=PROJECT_ROOT,
                env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **(env or {})},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        )

    async def outputs(self, timeout: float) -> List[bytes]:
        """Wait, at most ``timeout`` seconds, for every process; return their stdout.

        Fails with the end of a process's stderr when it did not exit 0.
        """
        results = await asyncio.wait_for(
            asyncio.gather(*[w.communicate() for w in self._workers]), timeout
        )
        for worker, (_, err) in zip(self._workers, results, strict=True):
            assert worker.returncode == 0, err.decode()[-2000:]
        return [out for out, _ in results]
