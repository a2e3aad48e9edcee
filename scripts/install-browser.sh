#!/usr/bin/env bash
# Installs what the overview page's browser test drives: Debian's chromium and
# chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver), unless they are there.
# Needs apt-get and root (as on the CI machine); says so and fails otherwise.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null || [ "$(id -u)" != "0" ]; then
  echo "The browser test needs Debian's chromium and chromium-driver: run as root" \
       "'apt-get install chromium chromium-driver', or deselect it with -m 'not browser'." >&2
  exit 1
fi
echo "Installing chromium and chromium-driver (apt-get) for the browser test ..."
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q chromium chromium-driver >/dev/null; then
  apt-get update -q >/dev/null
  apt-get install -y -q chromium chromium-driver >/dev/null
fi
