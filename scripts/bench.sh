#!/usr/bin/env bash
# Run the benchmark suite and print its table (pass --quick for a short version).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
cd "$root"
exec "$root/.venv/bin/python" benchmarks/run_all.py "$@"
