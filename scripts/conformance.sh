#!/usr/bin/env bash
# API conformance: start `hermes serve` (release) on a free loopback port and run schemathesis
# against the committed openapi/openapi.json: every operation, its examples, the coverage phase
# (boundary and invalid values) and generated cases, with every check. Exits non-zero on any
# failure: a 5xx, a response that breaks its documented schema, an undocumented status code,
# schema-invalid input that is accepted, schema-valid input that is refused.
#
#   scripts/conformance.sh [BIN]      (BIN defaults to target/release/hermes)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/hermes}
OUT=target/conformance
mkdir -p "$OUT"
EXAMPLES=${HERMES_CONFORMANCE_EXAMPLES:-50}

# shellcheck source=scripts/serve_bg.sh
source scripts/serve_bg.sh
start_server "$BIN" "$OUT"

# The NDJSON stream answers 200 with a per-line error object for a bad line (the contract:
# "a bad line answers {line, error} and the stream goes on"), so schema-invalid input is not
# rejected with a 4xx there by design; that one check is skipped for that one operation.
export SCHEMATHESIS_HOOKS=conformance_hooks
export PYTHONPATH="$PWD/scripts${PYTHONPATH:+:$PYTHONPATH}"
# schemathesis keeps per-run state (the crashes it recorded) in ./.schemathesis unless told
# otherwise: here it goes under $OUT (in target/, ignored), so that a run leaves the working
# tree as it found it. Replay: schemathesis replay target/conformance/schemathesis-cache/crashes
cat >"$OUT/schemathesis.toml" <<TOML
[cache]
directory = "$PWD/$OUT/schemathesis-cache"
TOML
st() { .cache/venv/bin/schemathesis --config-file "$OUT/schemathesis.toml" "$@"; }
status=0
# One worker: with two, schemathesis's coverage phase calls ast.parse from two threads at once,
# and CPython 3.11 then fails now and then with "SystemError: AST constructor recursion depth
# mismatch" (seen once on GET /v1/buckets, gone on the rerun): a tool error, not a finding.
st run openapi/openapi.json --url "$url" \
  --checks all --phases examples,coverage,fuzzing --max-examples "$EXAMPLES" --seed 1 \
  --workers 1 --request-timeout 60 --no-color \
  --exclude-path /v1/label/stream \
  --report junit --report-junit-path "$OUT/junit.xml" || status=$?
st run openapi/openapi.json --url "$url" \
  --checks all --exclude-checks negative_data_rejection --phases examples,coverage,fuzzing \
  --max-examples "$EXAMPLES" --seed 1 --workers 1 --request-timeout 60 --no-color \
  --include-path /v1/label/stream || status=$?

# The server must have survived all of it: same process, still ready.
kill -0 $pid || { echo "conformance: the server died during the run"; exit 1; }
curl -fs "$url/readyz" >/dev/null || { echo "conformance: the server is no longer ready"; exit 1; }
echo "conformance: server pid $pid survived, still ready"
exit $status
