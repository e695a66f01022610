#!/bin/bash
# Run the whole test suite: all three tiers in one pytest session, then ruff and mypy.
# pytest's exit code 5 ("no tests collected") is not a failure of the suite.
set -u
cd "$(dirname "$0")/.."
start=$(date +%s)
.venv/bin/python -m pytest -ra "$@"
rc=$?
[ "$rc" -eq 5 ] && rc=0
echo "== ruff =="
.venv/bin/ruff check src tests benchmarks || rc=1
echo "== mypy --strict =="
.venv/bin/mypy || rc=1
echo "== whole suite took $(( $(date +%s) - start )) s, exit $rc =="
exit "$rc"
