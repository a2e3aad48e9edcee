#!/usr/bin/env bash
# Runs the app locally on a fresh machine: Azure Functions Core Tools (installed into
# the project from npm when missing), the Python 3.13 environment with the app's
# packages, Azurite, then `func start`.
set -euo pipefail
cd "$(dirname "$0")/.."

how_to_install() {
  cat >&2 <<'MSG'
Azure Functions Core Tools (the `func` command, version 4) is not installed, so the
app cannot run locally. Install it, then run this script again:
  - npm:     npm install --global azure-functions-core-tools@4
  - macOS:   brew tap azure/functions && brew install azure-functions-core-tools@4
  - Windows: winget install Microsoft.Azure.FunctionsCoreTools
  - Linux:   see "Install the Azure Functions Core Tools" at
             https://learn.microsoft.com/azure/azure-functions/functions-run-local
MSG
}

# Core Tools: on PATH, or in the project's node_modules from an earlier run, or
# installed there now. Its npm installer downloads the Functions host from Microsoft's
# CDN; where that is out of reach the install fails, and this says how to install it.
if ! command -v func >/dev/null 2>&1 && [ ! -x node_modules/.bin/func ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "Installing Azure Functions Core Tools 4 into node_modules (npm) ..."
    if ! npm install --no-save --no-audit --no-fund --loglevel=error \
        azure-functions-core-tools@4 >&2; then
      echo "The Core Tools install failed (its installer downloads the Functions host)." >&2
      how_to_install
      exit 1
    fi
  fi
  if [ ! -x node_modules/.bin/func ]; then
    how_to_install
    exit 1
  fi
fi
PATH="$PWD/node_modules/.bin:$PATH"

# The deployed Python version (3.13; scripts/find-python.sh says how to get it).
source scripts/setup.sh requirements.txt 3.13

# Azurite on its standard loopback ports (UseDevelopmentStorage=true points there),
# data under .azurite/ (git-ignored). Reused if something already serves port 10000.
if (exec 3<>/dev/tcp/127.0.0.1/10000) 2>/dev/null; then
  echo "Port 10000 is in use; assuming Azurite is already running there."
else
  mkdir -p .azurite
  echo "Starting Azurite (blob, queue, table) with data in .azurite/ ..."
  node_modules/.bin/azurite --silent --disableTelemetry --skipApiVersionCheck \
    --location .azurite --blobHost 127.0.0.1 --queueHost 127.0.0.1 --tableHost 127.0.0.1 \
    > .azurite/azurite.log 2>&1 &
  AZURITE_PID=$!
  trap 'kill "$AZURITE_PID" 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/10000) 2>/dev/null && break
    kill -0 "$AZURITE_PID" 2>/dev/null || { cat .azurite/azurite.log >&2; exit 1; }
    sleep 0.1
  done
fi

# func start runs the Python worker with the python on PATH: the project's venv.
source "$VENV/bin/activate"
func start "$@"
