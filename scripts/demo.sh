#!/usr/bin/env bash
# The main job on the embedded default (SQLite in ./.demo, the local Qwen model, offline):
# register prompts, a model and their suites; run both gates; promote what passed; roll
# back; verify the tamper-evident audit log. Reports land in ./reports/.
set -euo pipefail
cd "$(dirname "$0")/.."
export LOCKGATE_HOME="${LOCKGATE_HOME:-$PWD/.demo}"
export LOCKGATE_USER="${LOCKGATE_USER:-demo}"
lockgate() { .venv/bin/lockgate "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
gate() {  # run a gate; a failing gate is part of the story, not a demo failure
  local code=0
  lockgate eval "$@" || code=$?
  case $code in
    0) echo "-> gate PASSED (exit 0)" ;;
    1) echo "-> gate FAILED (exit 1): this is what would block the merge in CI" ;;
    *) echo "-> lockgate eval failed with exit $code" >&2; exit "$code" ;;
  esac
}

rm -rf "$LOCKGATE_HOME" reports
mkdir -p reports

step "1. Register every example artifact (prompts, suites, a fraud model) in one transaction"
lockgate push examples/
lockgate push examples/ | tail -n 1     # pushing again changes nothing
lockgate list

step "2. Prompts are code: what changed from v4 to v5?"
lockgate diff support-triage@4 support-triage@5 || true

step "3. The models behind the names (offline: the local Qwen model, priced at \$0)"
lockgate models prepare qwen2.5-coder-1.5b-instruct   # assembles the 1.1 GB file once
lockgate models list
lockgate chat gpt-class-foundation-model \
  "In one sentence: why do teams version their prompts?" --max-tokens 60

step "4. Classical gate: the fraud model on its held-out transactions (F1, ROC AUC)"
gate fraud-eval-v3 --html reports/fraud.html --junit reports/fraud.xml
lockgate label set fraud@3 production

step "5. LLM gate on the DESIGN.md prompt (v4) with the local model, one repeat"
gate support-triage@4 --repeats 1 --html reports/triage-v4.html

step "6. LLM gate on the improved prompt (v5): 64 tickets x 3 repeats"
gate support-triage@5 --html reports/triage-v5.html --junit reports/triage-v5.xml
lockgate runs list

step "7. Promote, then roll back"
lockgate label set support-triage@4 production
lockgate label set support-triage@5 production
lockgate rollback support-triage --label production
lockgate label list support-triage

step "8. Every change was audited; the hash chain verifies"
lockgate audit log --limit 12
lockgate audit verify

printf '\nReports: %s\n' "$(ls reports/*.html | tr '\n' ' ')"
printf 'Demo data: %s (SQLite). Explore: LOCKGATE_HOME=%s .venv/bin/lockgate --help\n' \
  "$LOCKGATE_HOME" "$LOCKGATE_HOME"
