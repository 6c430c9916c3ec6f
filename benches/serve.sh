#!/usr/bin/env bash
# Aggregate tokens/s of `phi serve` under C concurrent streaming clients,
# interleaved over rounds (not a timed test).
#
#   benches/serve.sh MODEL.gguf [ROUNDS] [C list] [N_TOKENS]
#   e.g. benches/serve.sh ~/.cache/phi-ref/models/phi3-mini-synth-q4_0.gguf 2 "1 4" 64
#
# THREADS (default 2), CTX per sequence (default 512). With LLAMA_SERVER=path
# the same clients also run against llama-server (-np C_max, -c C_max × CTX,
# -t THREADS), alternating with phi in each round.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$1; ROUNDS=${2:-2}; CS=${3:-"1 4"}; N=${4:-64}
THREADS=${THREADS:-2}; CTX=${CTX:-512}
NP=$(echo $CS | tr ' ' '\n' | sort -n | tail -1)
cargo build --release -p phi-cli --quiet
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

target/release/phi serve -m "$MODEL" --port 0 -np "$NP" -c "$CTX" -t "$THREADS" >"$work/phi.out" 2>&1 &
pids+=($!)
until grep -q '^listening on ' "$work/phi.out"; do sleep 0.5; done
PHI_URL=$(sed -n 's/^listening on //p' "$work/phi.out")
if [ -n "${LLAMA_SERVER:-}" ]; then
  "$LLAMA_SERVER" -m "$MODEL" --host 127.0.0.1 --port 18431 -np "$NP" -c $((NP * CTX)) -t "$THREADS" >"$work/llama.out" 2>&1 &
  pids+=($!)
  until curl -sf http://127.0.0.1:18431/health >/dev/null; do sleep 0.5; done
fi
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) | threads $THREADS | $N tokens/request | ctx/seq $CTX | np $NP"
python3 benches/serve_client.py "$PHI_URL" 1 8 >/dev/null   # warm-up
for r in $(seq 1 "$ROUNDS"); do
  for c in $CS; do
    echo "phi round $r $(python3 benches/serve_client.py "$PHI_URL" "$c" "$N")"
    if [ -n "${LLAMA_SERVER:-}" ]; then
      echo "llama-server round $r $(python3 benches/serve_client.py http://127.0.0.1:18431 "$c" "$N")"
    fi
  done
done
