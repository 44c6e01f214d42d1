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

step "9. The gateway: the production prompt served as an OpenAI-compatible model"
PORT="${LOCKGATE_DEMO_PORT:-8080}"
lockgate tenants create demo --usd-per-day 1 --requests-per-minute 600
SECRET=$(lockgate keys create --tenant demo --label demo-key 2>/dev/null | tail -n 1)
lockgate serve --port "$PORT" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
echo "(the gateway loads its models and tokenizers before it reports ready)"
for _ in $(seq 1 300); do
  curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && break
  sleep 0.2
done
echo "\$ curl http://127.0.0.1:$PORT/v1/chat/completions -H 'Authorization: Bearer lg-…' \\"
echo "    -d '{\"model\": \"prompt:support-triage@production\", \"variables\": {\"input\": \"…\"}}'"
curl -s -D reports/headers.txt "http://127.0.0.1:$PORT/v1/chat/completions" \
  -H "Authorization: Bearer $SECRET" -H 'Content-Type: application/json' \
  -d '{"model": "prompt:support-triage@production", "max_tokens": 40,
       "variables": {"input": "My invoice shows two charges for March, please refund one."}}'
echo
grep -i '^x-lockgate' reports/headers.txt
echo "\$ python: openai.OpenAI(base_url=..., api_key=...).chat.completions.create(model='prompt:support-triage@production', stream=True)"
.venv/bin/python - "$PORT" "$SECRET" <<'PY'
import sys
import openai

client = openai.OpenAI(base_url=f"http://127.0.0.1:{sys.argv[1]}/v1", api_key=sys.argv[2])
stream = client.chat.completions.create(
    model="prompt:support-triage@production",
    messages=[],
    stream=True,
    extra_body={"variables": {"input": "I can't log in since I changed my email address."}},
)
for event in stream:
    if event.choices:
        print(event.choices[0].delta.content or "", end="", flush=True)
print()
PY
sleep 0.5
lockgate traces list --limit 5
lockgate usage --tenant demo --by prompt

printf '\nDemo data: %s (SQLite). Explore: LOCKGATE_HOME=%s .venv/bin/lockgate --help\n' \
  "$LOCKGATE_HOME" "$LOCKGATE_HOME"
printf 'The gateway keeps running on http://127.0.0.1:%s/v1 (key in the demo above); Ctrl-C to stop.\n' "$PORT"
wait "$SERVER"
