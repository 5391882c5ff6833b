#!/usr/bin/env bash
# The budgets (size, start-up, memory, time to verdict, engine, rollback) are checked by the
# side-by-side benchmark, which prints PASS/FAIL per budget and writes BENCHMARKS.md.
# Kept for the old name: `scripts/budgets.sh [runs]` = `scripts/bench.sh --runs runs`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then
  exec scripts/bench.sh --runs "$1" "${@:2}"
fi
exec scripts/bench.sh "$@"
