#!/usr/bin/env bash
# Runs the whole test suite from a fresh clone: installs what it needs, lints, tests.
# On each Python version in PYTHON_VERSIONS (default "3.13 3.11"):
#   3.13, the version the app is deployed with: type check, lint and format check,
#         then every test layer, the Functions runtime layer (3.13+ only) and the
#         browser test of the overview page (it installs Debian's chromium) included;
#   any other (3.11): every layer the runtime does not need, less the slow,
#         multi-process and browser runs, whose logic does not depend on the version.
# The tests run on two pytest-xdist workers (PYTEST_WORKERS, default 2; 0 runs them in
# one process): they mostly wait on Azurite, the Durable double and child processes.
# Extra arguments go to pytest, e.g. scripts/test.sh -k policy
set -euo pipefail
cd "$(dirname "$0")/.."
workers="${PYTEST_WORKERS:-2}"

for version in ${PYTHON_VERSIONS:-3.13 3.11}; do
  source scripts/setup.sh requirements-dev.txt "$version"
  if [ "$version" = "3.13" ]; then
    echo "Type check (mypy), lint and format check (ruff) ..."
    "$VENV/bin/mypy"
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    bash scripts/install-browser.sh
    echo "Testing on Python $version (pytest; the tests start their own Azurite) ..."
    "$VENV/bin/python" -m pytest -n "$workers" "$@"
  else
    echo "Testing on Python $version ..."
    "$VENV/bin/python" -m pytest -n "$workers" -m "not runtime and not slow and not processes and not browser" "$@"
  fi
done
