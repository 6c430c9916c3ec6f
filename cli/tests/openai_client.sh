#!/usr/bin/env bash
# The official `openai` Python package against `phi serve` (called by .ci/run):
# a throwaway venv, the server on 127.0.0.1 port 0 with a fixture model, the
# client script, then a SIGTERM that must stop the server with status 0.
set -euo pipefail
cd "$(dirname "$0")/../.."

work=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then kill "$server"; wait "$server" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check openai

cargo build --release -p phi-cli --quiet
target/release/phi serve -m tests/fixtures/models/phi3-tiny-q4_0.gguf \
  --host 127.0.0.1 --port 0 -np 2 -c 256 -t 2 >"$work/out" 2>"$work/err" &
server=$!
for _ in $(seq 1 300); do
  grep -q '^listening on ' "$work/out" && break
  kill -0 "$server" 2>/dev/null || { cat "$work/err"; exit 1; }
  sleep 0.1
done
url=$(sed -n 's/^listening on //p' "$work/out")
[ -n "$url" ] || { echo "phi serve did not start"; cat "$work/err"; exit 1; }

OPENAI_BASE_URL="$url/v1" timeout 120 "$work/venv/bin/python" cli/tests/openai_client.py

kill -TERM "$server"
status=0
wait "$server" || status=$?
server=
[ "$status" -eq 0 ] || { echo "phi serve exited with $status after SIGTERM"; exit 1; }
