#!/usr/bin/env bash
# The main job: set up .venv if needed, then run the example ML pipeline end to end on the
# embedded stores (SQLite + local objects) twice (the second run comes from the cache),
# then change a hyperparameter, explain the cache decision, list the contract checks, pass
# the reproducibility gate, and verify the ledger and store.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh"
pt="$root/.venv/bin/pipetrail"
cd "$root/examples/breast_cancer"
"$root/.venv/bin/python" prepare_data.py
echo "== first run: every step executes"
"$pt" run pipeline.py
echo "== second run: every step comes from the cache"
"$pt" run pipeline.py
echo "== a new hyperparameter: only the steps downstream of it run again"
"$pt" run pipeline.py -p C=0.3
"$pt" runs
"$pt" why latest train
"$pt" show latest
echo "== contracts: every check at every stage boundary of the last run"
"$pt" contracts latest
echo "== the gate: run, check contracts, reproduce without the cache, compare"
"$pt" check pipeline.py --report-dir .pipetrail/reports
echo "== integrity"
"$pt" audit verify
"$pt" store verify
