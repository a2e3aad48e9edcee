#!/usr/bin/env bash
# Prints the path of a Python interpreter of the given minor version (e.g. 3.13), or
# says what is missing and how to install it, and fails.
# Usage: scripts/find-python.sh 3.13
set -euo pipefail
want="$1"

matches() { "$1" -c "import sys; sys.exit(0 if '%d.%d' % sys.version_info[:2] == '$want' else 1)" 2>/dev/null; }

candidates=("python$want")
if command -v pyenv >/dev/null 2>&1; then
  while IFS= read -r prefix; do candidates+=("$prefix/bin/python$want"); done \
    < <(pyenv prefix "$want" 2>/dev/null || true)
fi
for dir in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$want"*; do candidates+=("$dir/bin/python$want"); done
candidates+=("/usr/local/bin/python$want" "/usr/bin/python$want" "python3")

for candidate in "${candidates[@]}"; do
  path=$(command -v "$candidate" 2>/dev/null || true)
  if [ -n "$path" ] && matches "$path"; then
    echo "$path"
    exit 0
  fi
done
cat >&2 <<MSG
Python $want was not found (looked for python$want on PATH, in pyenv and in
/usr/local/bin and /usr/bin). Install it, then run this again, for example:
  pyenv install $want        # or: apt-get install python$want python$want-venv
MSG
exit 1
