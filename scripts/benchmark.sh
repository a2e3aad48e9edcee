#!/usr/bin/env bash
# Benchmarks HttpStartSingle against the seed's check-then-start (see benchmarks/run.py).
# Full run: writes docs/benchmark.md and docs/benchmark.png (a few minutes).
# --quick: a small run into benchmarks/out/ that checks the benchmark still works (CI).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh requirements-dev.txt
.venv/bin/python -m benchmarks.run "$@"
