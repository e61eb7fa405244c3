#!/usr/bin/env bash
# schemathesis against the real daemon: for each config (config.example.toml, and
# tests/schemathesis/multi.toml with two resources and every strategy type), start authd on a
# free port with a temporary store and a signing secret from the environment, register a user
# for a session token, and run `schemathesis run` on the daemon's own /openapi.json with the
# checks not_a_server_error, status_code_conformance, content_type_conformance and
# response_schema_conformance. Any failure fails the script.
#
# Bounded: SCHEMATHESIS_MAX_EXAMPLES test cases per operation (default 25), and
# SCHEMATHESIS_MAX_TIME seconds per pass (default 40; SCHEMATHESIS_END_TIME, default 10, for
# the passes of the operations that end the session): about 3 minutes in all.
#
# Usage: tests/schemathesis/run.sh [AUTHD_BINARY]   (default: target/release/authd if built,
# else target/debug/authd). Installs schemathesis from
# tests/python/requirements-schemathesis.txt into tests/python/.venv-schemathesis.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"

bin="${1:-}"
if [ -z "$bin" ]; then
  if [ -x target/release/authd ]; then bin=target/release/authd; else bin=target/debug/authd; fi
fi
[ -x "$bin" ] || { echo "no authd binary at $bin (cargo build first)"; exit 1; }
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

venv="$root/tests/python/.venv-schemathesis"
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements-schemathesis.txt

max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-25}"
max_time="${SCHEMATHESIS_MAX_TIME:-40}"
end_time="${SCHEMATHESIS_END_TIME:-10}"
work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Writes an adapted copy of $1 into $2: the port, the store in the temporary folder, the
# signing secret from the environment.
adapt() {
  local src="$1" dst="$2" port="$3" db="$4"
  python3 - "$src" "$dst" "$port" "$db" <<'PY'
import re, sys
src, dst, port, db = sys.argv[1:]
text = open(src).read()
text = re.sub(r'(?m)^listen = "[^"]*"', f'listen = "127.0.0.1:{port}"', text, count=1)
text = re.sub(r'(?m)^path = "[^"]*"', f'path = "{db}"', text, count=1)
if "signing_secret_env" not in re.sub(r"(?m)#.*$", "", text):
    text = text.replace("[tokens]\n", '[tokens]\nsigning_secret_env = "AUTHD_SIGNING_SECRET"\n', 1)
open(dst, "w").write(text)
PY
}

export AUTHD_SIGNING_SECRET
AUTHD_SIGNING_SECRET="$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')"

total_requests=0
total_failed=0

# Registers through $3/$4 (subject/strategy) with body $5 at $1 and prints the session token.
register() {
  curl -fsS -X POST -H 'content-type: application/json' -d "$3" "$1/auth/$2/register" |
    python3 -c 'import json, sys; print(json.load(sys.stdin).get("token", ""))'
}

# One schemathesis pass: $1 label, $2 base URL, $3 token, $4 seconds, then filter options.
pass() {
  local label="$1" base="$2" token="$3" seconds="$4"
  shift 4
  local report="$work/$label.ndjson" status=0 started=$SECONDS
  echo "== schemathesis: $label"
  "$venv/bin/schemathesis" run "$base/openapi.json" "$@" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$max_examples" --max-time "$seconds" \
    --header "Authorization: Bearer $token" \
    --seed 1 --workers 2 --no-color --suppress-health-check all \
    --report ndjson --report-ndjson-path "$report" >"$work/$label.out" 2>&1 || status=$?
  sed -n '/^=* SUMMARY/,$p' "$work/$label.out"
  [ "$status" -eq 0 ] || { cat "$work/$label.out"; total_failed=$((total_failed + 1)); }
  local requests
  # One interaction of a scenario's recorder is one request sent.
  requests="$(python3 - "$report" <<'PY'
import json, sys
n = 0
for line in open(sys.argv[1]):
    try:
        event = json.loads(line)
    except ValueError:
        continue
    finished = event.get("ScenarioFinished") if isinstance(event, dict) else None
    if finished:
        n += len((finished.get("recorder") or {}).get("interactions", {}))
print(n)
PY
)"
  echo "== $label: $requests requests in $((SECONDS - started)) s, exit status $status"
  total_requests=$((total_requests + requests))
}

# Starts the daemon on an adapted copy of $2 (label $1); sets base.
start() {
  local name="$1" src="$2" dir="$work/$1" port
  mkdir -p "$dir"
  port="$(free_port)"
  adapt "$src" "$dir/authd.toml" "$port" "$dir/authd.redb"
  RUST_LOG=warn "$bin" serve --config "$dir/authd.toml" >"$dir/daemon.log" 2>&1 &
  pid=$!
  base="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do
    curl -fsS "$base/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "$base/healthz" >/dev/null || { cat "$dir/daemon.log"; exit 1; }
  echo "== daemon on $src at $base"
}

stop() {
  local name="$1"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
  # A 500 answers {"code": "internal"} and logs HT0500; a panic is caught the same way.
  if grep -q "HT0500\|panicked" "$work/$name/daemon.log"; then
    echo "the daemon logged an internal error or a panic:"
    grep "HT0500\|panicked" "$work/$name/daemon.log" | head -20
    total_failed=$((total_failed + 1))
  fi
}

# The operations that end the test's session (sign-outs, deleting the user) run in a pass of
# their own, after the others, so that the signed-in routes are tested with a live token.
# (Filters of one kind add up: an operation id regex names the resource too.)
ending='_(sign_out|sign_out_all|me_delete)$'
ending_of() { echo "^$1_(sign_out|sign_out_all|me_delete)\$"; }
user='{"email": "schemathesis@example.com", "name": "S", "password": "correct horse battery", "password_confirmation": "correct horse battery"}'
staff='{"login": "schemathesis", "level": 1, "pin": "246813", "pin_confirmation": "246813"}'
started_all=$SECONDS

start example config.example.toml
token="$(register "$base" user/password "$user")"
pass example "$base" "$token" "$max_time" --exclude-operation-id-regex "$ending"
pass example-ending "$base" "$token" "$end_time" --include-operation-id-regex "$ending"
stop example

start multi tests/schemathesis/multi.toml
token="$(register "$base" user/password "$user")"
staff_token="$(register "$base" staff/pin "$staff")"
pass multi-user "$base" "$token" "$max_time" --include-tag user --exclude-operation-id-regex "$ending"
pass multi-staff "$base" "$staff_token" "$max_time" --include-tag staff --exclude-operation-id-regex "$ending"
pass multi-daemon "$base" "$token" "$end_time" --include-tag daemon
pass multi-user-ending "$base" "$token" "$end_time" --include-operation-id-regex "$(ending_of user)"
pass multi-staff-ending "$base" "$staff_token" "$end_time" --include-operation-id-regex "$(ending_of staff)"
stop multi

echo "== schemathesis: $total_requests requests in all, $((SECONDS - started_all)) s, $total_failed failed passes"
[ "$total_failed" -eq 0 ]
