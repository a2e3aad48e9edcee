"""Azurite's Blob service on a free loopback port, for tests and the benchmark.

It runs from the project's own node_modules (``npm ci`` installs it), always with
``--disableTelemetry`` on 127.0.0.1, in memory, and stops with its owner.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

PROJECT_ROOT = Path(__file__).resolve().parents[2]
AZURITE_BLOB = PROJECT_ROOT / "node_modules" / ".bin" / "azurite-blob"

#: Azurite's well-known development account. The key is public (it is in Azurite's
#: documentation) and only opens the emulator.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def connection_string(port: int) -> str:
    """The connection string of the development account served on ``port``."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Azurite:
    """One Azurite Blob service process."""

    def __init__(self) -> None:
        """Prepare; :meth:`start` runs it."""
        self.port = 0
        self._process: Optional[subprocess.Popen] = None

    @property
    def connection_string(self) -> str:
        """The connection string to reach this Azurite."""
        return connection_string(self.port)

    def start(self, timeout: float = 30.0) -> "Azurite":
        """Start Azurite and wait until it accepts connections."""
        if not AZURITE_BLOB.exists():
            raise RuntimeError(f"{AZURITE_BLOB} is missing: run 'npm ci' in {PROJECT_ROOT}")
        for _ in range(3):  # a free port can be taken between the probe and the start
            self.port = free_port()
            self._process = subprocess.Popen(
                [
                    str(AZURITE_BLOB),
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    str(self.port),
                    "--inMemoryPersistence",
                    "--disableTelemetry",
                    "--silent",
                    # The Blob SDK speaks a newer API version than Azurite announces.
                    "--skipApiVersionCheck",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_until_listening(timeout):
                return self
            self.stop()
        raise RuntimeError("Azurite did not start")

    def _wait_until_listening(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.1)
        return False

    def stop(self) -> None:
        """Stop Azurite."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        self._process = None
