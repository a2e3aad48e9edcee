#!/usr/bin/env bash
# Shared set-up for the project's commands: a virtual environment on the given Python
# version with the given requirements file, and the npm packages (Azurite). Safe to
# run again: it only installs what is missing or out of date.
# Usage: source scripts/setup.sh requirements.txt [PYTHON_VERSION]
# The deployed version (3.13, the default) lives in .venv, any other in .venv-<version>.
# Sets VENV to the environment's folder.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY_VERSION="${2:-3.13}"
if [ "$PY_VERSION" = "3.13" ]; then VENV="$ROOT/.venv"; else VENV="$ROOT/.venv-$PY_VERSION"; fi

if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c \
    "import sys; sys.exit(0 if '%d.%d' % sys.version_info[:2] == '$PY_VERSION' else 1)"; then
  echo "$VENV is not Python $PY_VERSION; making it anew ..."
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  PYTHON="$("$ROOT/scripts/find-python.sh" "$PY_VERSION")"
  echo "Creating the virtual environment in $VENV with $PYTHON ..."
  "$PYTHON" -m venv "$VENV"
fi
echo "Installing Python packages from ${1} into $VENV ..."
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/$1"

# npm ci installs exactly what package-lock.json pins; skipped when nothing changed.
if [ ! -f "$ROOT/node_modules/.package-lock.json" ] \
   || [ "$ROOT/package-lock.json" -nt "$ROOT/node_modules/.package-lock.json" ]; then
  echo "Installing Azurite (npm ci) ..."
  (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error)
fi
