#!/usr/bin/env bash
# Runs the app locally: virtual environment, packages, Azurite, then `func start`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v func >/dev/null 2>&1; then
  cat >&2 <<'MSG'
Azure Functions Core Tools (the `func` command, version 4) is not installed, so the
app cannot run locally. Install it, then run this script again:
  - npm:     npm install --global azure-functions-core-tools@4
  - macOS:   brew tap azure/functions && brew install azure-functions-core-tools@4
  - Windows: winget install Microsoft.Azure.FunctionsCoreTools
  - Linux:   see "Install the Azure Functions Core Tools" at
             https://learn.microsoft.com/azure/azure-functions/functions-run-local
MSG
  exit 1
fi

source scripts/setup.sh requirements.txt

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
source .venv/bin/activate
func start "$@"
