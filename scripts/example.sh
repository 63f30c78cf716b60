#!/usr/bin/env bash
# The main job: set up .venv if needed, then run the example ML pipeline end to end on the
# embedded stores (SQLite + local objects) twice (the second run comes from the cache),
# then change a hyperparameter, explain the cache decision, list the contract checks, pass
# the reproducibility gate, promote a model under a policy with a second person's signed
# approval and roll it back (scripts/example_governance.sh), and verify the ledger (its
# signatures too) and the store. Every time it starts from an empty example record (the
# example's .pipetrail, which git ignores), so it prints what the README shows.
# PIPETRAIL_EXAMPLE_PYTHON: run with this Python (pipetrail installed) instead of .venv.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PIPETRAIL_EXAMPLE_PYTHON:-}" ]; then
  bash "$root/scripts/bootstrap.sh"
  export PIPETRAIL_EXAMPLE_PYTHON="$root/.venv/bin/python"
fi
py="$PIPETRAIL_EXAMPLE_PYTHON"
pt() { "$py" -m pipetrail.cli.main "$@"; }
cd "$root/examples/breast_cancer"
rm -rf .pipetrail
"$py" prepare_data.py
echo "== first run: every step executes"
pt run pipeline.py
echo "== second run: every step comes from the cache"
pt run pipeline.py
echo "== a new hyperparameter: only the steps downstream of it run again"
pt run pipeline.py -p C=0.3
pt runs
pt why latest train
pt show latest
echo "== contracts: every check at every stage boundary of the last run"
pt contracts latest
echo "== the gate: run, check contracts, reproduce without the cache, compare"
pt check pipeline.py --report-dir .pipetrail/reports
bash "$root/scripts/example_governance.sh"
echo "== integrity"
pt audit verify
pt store verify
