#!/usr/bin/env bash
# The test command: set up .venv if needed, lint, type-check, check layers, run every test.
# PostgreSQL tests start their own throwaway cluster (tests/support/postgres.py).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/unit -x`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# Browser tests drive Debian's chromium through Playwright (never a downloaded browser).
# It installs while the virtual environment is set up.
chromium_pid=""
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== installing Debian's chromium for the browser tests"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null &
  chromium_pid=$!
fi
bash scripts/bootstrap.sh
if [ -n "$chromium_pid" ]; then
  wait "$chromium_pid"
fi
bin="$root/.venv/bin"
mypy_pid=""
if [ "$#" -eq 0 ]; then
  echo "== ruff"; "$bin/ruff" check src tests benchmarks examples
  "$bin/ruff" format --check src tests benchmarks examples
  echo "== import-linter"; "$bin/lint-imports"
  # mypy only reads the sources: it runs beside pytest (which spends much of its time
  # waiting on servers and child processes) and its verdict is printed after the tests.
  mypy_log="$(mktemp)"
  "$bin/mypy" >"$mypy_log" 2>&1 &
  mypy_pid=$!
  trap '[ -z "$mypy_pid" ] || kill "$mypy_pid" 2>/dev/null || true; rm -f "$mypy_log"' EXIT
fi
echo "== pytest"
status=0
"$bin/python" -m pytest "${@:-tests}" -q -p no:cacheprovider || status=$?
if [ -n "$mypy_pid" ]; then
  echo "== mypy"
  mypy_status=0
  wait "$mypy_pid" || mypy_status=$?
  mypy_pid=""
  cat "$mypy_log"
  if [ "$status" -eq 0 ]; then status=$mypy_status; fi
fi
exit "$status"
