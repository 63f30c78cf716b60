#!/usr/bin/env bash
# The example's governed promotion (README, "Walk-through: governed promotion"). Run it in
# examples/breast_cancer after the example's runs (scripts/example.sh does). Two people:
# ada trained the models and is the project's first admin; ben approves, with his own
# identity and key. Each has a throwaway key folder under .pipetrail/example-keys (what
# PIPETRAIL_HOME points at). ada registers the model of the C=1.0 run and of the C=0.3 run
# as versions 1 and 2 and asks for production under the threshold policy of
# pipetrail.toml (roc_auc >= 0.95, contracts held, one approver other than the requester);
# ben approves each request, then rolls production back to version 1, and the history
# shows every act with its signature status. PIPETRAIL_EXAMPLE_PYTHON names the Python
# that runs pipetrail (default: python).
set -euo pipefail
py="${PIPETRAIL_EXAMPLE_PYTHON:-python}"
keys="$PWD/.pipetrail/example-keys"
as() {
  local who="$1"
  shift
  PIPETRAIL_USER="$who" PIPETRAIL_HOME="$keys/$who" "$py" -m pipetrail.cli.main "$@"
}
# Print what a command prints, and keep its last line (a request id) in $last.
keep_last() {
  local out
  out="$("$@")"
  echo "$out"
  last="${out##*$'\n'}"
}

echo "== governance: ada, who trained the models, is the first admin; ben approves"
as ada user init
ben_key="$(as ben user key create)"
as ada user add ben --key "$ben_key" --role approver
first="$(as ada runs --purpose run --param C=1.0 -n 1 --json \
  | "$py" -c 'import json, sys; print(json.load(sys.stdin)[0]["run_id"])')"
as ada model register breast_cancer --from "$first:train"
as ada model register breast_cancer --from latest:train
echo "== ada asks for production; she may not approve her own request, ben does"
keep_last as ada promote breast_cancer:1 --to production --rationale "first model" \
  --risk low --risk-notes "held-out test set only"
as ada approve "$last" 2>&1 || echo "(refused, exit $?)"
as ben approve "$last" --comment "metrics and contracts checked"
keep_last as ada promote breast_cancer:2 --to production --rationale "C=0.3 regularises more" \
  --risk medium --risk-notes "not yet tried on new patients"
as ben approve "$last" --comment "agreed"
echo "== ben rolls production back to version 1"
as ben rollback breast_cancer --alias production --reason "recall dropped on the new intake"
echo "== the decision trail: every act, who, when, signature verified"
as ada model history breast_cancer
