#!/usr/bin/env bash
# The test command: set up .venv if needed, lint, type-check, check layers, run every test.
# PostgreSQL tests start their own throwaway cluster (tests/support/postgres.py).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/unit -x`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
# Browser tests drive Debian's chromium through Playwright (never a downloaded browser).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== installing Debian's chromium for the browser tests"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
fi
bin="$root/.venv/bin"
if [ "$#" -eq 0 ]; then
  echo "== ruff"; "$bin/ruff" check src tests benchmarks examples
  "$bin/ruff" format --check src tests benchmarks examples
  echo "== mypy"; "$bin/mypy"
  echo "== import-linter"; "$bin/lint-imports"
fi
echo "== pytest"
"$bin/python" -m pytest "${@:-tests}" -q -p no:cacheprovider
