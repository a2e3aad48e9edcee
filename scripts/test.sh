#!/usr/bin/env bash
# Runs the whole test suite from a fresh clone: installs what it needs, lints, tests.
# First on Python 3.13, the version the app is deployed with: every layer, the
# Functions runtime layer included. Then on Python 3.11, the other version the app
# supports: every layer the runtime (3.13+ only) does not need, less the slow and
# multi-process runs, whose logic does not depend on the version.
# Extra arguments go to both pytest runs, e.g. scripts/test.sh -k policy
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/setup.sh requirements-dev.txt 3.13
echo "Linting and format check (ruff) ..."
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
echo "Testing on Python 3.13 (pytest; the tests start their own Azurite) ..."
"$VENV/bin/python" -m pytest "$@"

source scripts/setup.sh requirements-dev.txt 3.11
echo "Testing on Python 3.11 ..."
"$VENV/bin/python" -m pytest -m "not runtime and not slow and not processes" "$@"
