#!/usr/bin/env bash
# Shared set-up for the project's commands: the virtual environment with the given
# requirements file, and the npm packages (Azurite). Safe to run again: it only
# installs what is missing or out of date.
# Usage: source scripts/setup.sh requirements.txt
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$ROOT/.venv/bin/python" ]; then
  echo "Creating the virtual environment in .venv ..."
  "$PYTHON" -m venv "$ROOT/.venv"
fi
echo "Installing Python packages from ${1} ..."
"$ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/$1"

# npm ci installs exactly what package-lock.json pins; skipped when nothing changed.
if [ ! -f "$ROOT/node_modules/.package-lock.json" ] \
   || [ "$ROOT/package-lock.json" -nt "$ROOT/node_modules/.package-lock.json" ]; then
  echo "Installing Azurite (npm ci) ..."
  (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error)
fi
