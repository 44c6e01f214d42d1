#!/usr/bin/env bash
# The main job on the embedded default (SQLite in ./.demo): push the example artifacts,
# promote and roll back a prompt, diff versions, and verify the tamper-evident audit log.
set -euo pipefail
cd "$(dirname "$0")/.."
export LOCKGATE_HOME="${LOCKGATE_HOME:-$PWD/.demo}"
export LOCKGATE_USER="${LOCKGATE_USER:-demo}"
lockgate() { .venv/bin/lockgate "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

rm -rf "$LOCKGATE_HOME"

step "Push every example artifact"
lockgate push examples/

step "Pushing again is a no-op"
lockgate push examples/

step "What is registered"
lockgate list

step "Promote support-triage@3 to production, then @4"
lockgate label set support-triage@3 production
lockgate label set support-triage@4 production
lockgate label list support-triage

step "What changed between the two versions"
lockgate diff support-triage@3 support-triage@4 || true

step "Roll production back"
lockgate rollback support-triage --label production
lockgate show support-triage@production

step "Audit log and chain verification"
lockgate audit log
lockgate audit verify

printf '\nDemo data is in %s (SQLite). Try: LOCKGATE_HOME=%s .venv/bin/lockgate --help\n' \
  "$LOCKGATE_HOME" "$LOCKGATE_HOME"
