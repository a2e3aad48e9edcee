#!/usr/bin/env bash
# Runs the whole test suite from a fresh clone: installs what it needs, lints, tests.
# Extra arguments go to pytest, e.g. scripts/test.sh -k policy
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh requirements-dev.txt

echo "Linting (flake8) ..."
.venv/bin/flake8 singleton HttpStartSingle SingletonOrchestrator SingletonActivity tests benchmarks

echo "Testing (pytest; the tests start their own Azurite) ..."
.venv/bin/python -m pytest "$@"
