#!/usr/bin/env bash
# `phi serve` (and llama-server) under C concurrent streaming clients: aggregate
# generated tokens/s, time to first token p50 / p95, peak RSS, and the TTFT of
# a 512-token prompt while 3 other streams decode vs on an idle server
# (issue #16's table). Interleaved over rounds; not a timed test.
#
#   benches/serve.sh MODEL.gguf [ROUNDS=2] [C list="1 2 4 8"] [N_TOKENS=128]
#   e.g. benches/serve.sh ~/.cache/phi-ref/models/phi3-mini-synth-q4_0.gguf 2 "1 2 4 8" 128
#   quick check: benches/serve.sh tests/fixtures/models/phi3-tiny-q4_0.gguf 1 "1 4" 32
#
# Each client streams one /v1/completions request: a distinct PROMPT-token
# prompt (default 128), N_TOKENS generated tokens, ignore_eos, temperature 0.
# Env: THREADS (2), CTX tokens per sequence (1024), PROMPT (128), LOAD=0 skips
# the TTFT-under-load measurement (512-token prompt, 3 background streams;
# needs 4 slots), LLAMA_SERVER=path/to/llama-server also runs llama.cpp's
# server (-np NP -c NP×CTX -t THREADS: its -c is the total) with the same
# clients, alternating with phi (phi first in odd rounds, llama-server first
# in even ones). NP = the largest C (at least 4 with LOAD). Both servers stay
# up for the whole run; peak RSS is their VmHWM at the end, against the
# model file plus an f16 KV cache of NP × CTX cells.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$1; ROUNDS=${2:-2}; CS=${3:-"1 2 4 8"}; N=${4:-128}
THREADS=${THREADS:-2}; CTX=${CTX:-1024}; PROMPT=${PROMPT:-128}; LOAD=${LOAD:-1}
NP=$(echo $CS | tr ' ' '\n' | sort -n | tail -1)
if [ "$LOAD" = 1 ] && [ "$NP" -lt 4 ]; then NP=4; fi
cargo build --release -p phi-cli --quiet
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

target/release/phi serve -m "$MODEL" --port 0 -np "$NP" -c "$CTX" -t "$THREADS" >"$work/phi.out" 2>&1 &
PHI_PID=$!; pids+=($PHI_PID)
until grep -q '^listening on ' "$work/phi.out"; do
  kill -0 $PHI_PID 2>/dev/null || { cat "$work/phi.out"; exit 1; }; sleep 0.5
done
PHI_URL=$(sed -n 's/^listening on //p' "$work/phi.out")
servers="phi"
if [ -n "${LLAMA_SERVER:-}" ]; then
  LLAMA_PORT=${LLAMA_PORT:-18431}
  "$LLAMA_SERVER" -m "$MODEL" --host 127.0.0.1 --port "$LLAMA_PORT" -np "$NP" -c $((NP * CTX)) -t "$THREADS" >"$work/llama.out" 2>&1 &
  LLAMA_PID=$!; pids+=($LLAMA_PID)
  until curl -sf "http://127.0.0.1:$LLAMA_PORT/health" >/dev/null; do
    kill -0 $LLAMA_PID 2>/dev/null || { tail -20 "$work/llama.out"; exit 1; }; sleep 0.5
  done
  servers="phi llama-server"
fi
url() { if [ "$1" = phi ]; then echo "$PHI_URL"; else echo "http://127.0.0.1:$LLAMA_PORT"; fi; }
pid() { if [ "$1" = phi ]; then echo "$PHI_PID"; else echo "$LLAMA_PID"; fi; }
order() { # $1 = round: phi first in odd rounds
  if [ $(($1 % 2)) = 1 ]; then echo $servers; else echo $servers | tr ' ' '\n' | tac | tr '\n' ' '; fi
}

echo "# $(date -u +%FT%TZ) |$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) | $(nproc) cores | load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $(basename "$MODEL") | threads $THREADS | prompt $PROMPT | $N tokens/request | ctx/seq $CTX | np $NP"
for s in $servers; do python3 benches/serve_client.py "$(url $s)" 1 8 "$PROMPT" >/dev/null; done   # warm-up
results="$work/results.jsonl"
for r in $(seq 1 "$ROUNDS"); do
  for c in $CS; do
    for s in $(order "$r"); do
      # Prompts new to both servers in every round and C (ids 1000·r + 100·C + i),
      # so every measurement prefills its prompts: no cached prefix helps.
      line=$(python3 benches/serve_client.py "$(url $s)" "$c" "$N" "$PROMPT" --first-id $((1000 * r + 100 * c)))
      echo "$s round $r $line"
      echo "{\"server\": \"$s\", \"round\": $r, \"streams\": $line}" >>"$results"
    done
  done
  if [ "$LOAD" = 1 ]; then
    for s in $(order "$r"); do
      line=$(python3 benches/serve_client.py "$(url $s)" --ttft-load --bg 3 --prompt 512 --reps 1)
      echo "$s round $r $line"
      echo "{\"server\": \"$s\", \"round\": $r, \"load\": $line}" >>"$results"
    done
  fi
done
for s in $servers; do
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$(pid $s)/status")
  echo "{\"server\": \"$s\", \"vmhwm_kib\": $hwm}" >>"$results"
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
target/release/phi inspect "$MODEL" --json >"$work/inspect.json"
python3 - "$results" "$work/inspect.json" "$NP" "$CTX" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
meta = json.load(open(sys.argv[2]))
np_, ctx = int(sys.argv[3]), int(sys.argv[4])
h = meta["hyperparameters"]
head_dim = h["embedding_length"] // h["attention.head_count"]
kv = 2 * h["block_count"] * h["attention.head_count_kv"] * head_dim * 2 * np_ * ctx
budget = meta["file_size"] + kv
servers = list(dict.fromkeys(r["server"] for r in rows))
med = lambda v: statistics.median(v) if v else float("nan")
def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")
agg = {}
print("\n| server | C | aggregate tok/s | decode tok/s (all C decoding) | TTFT p50 s | TTFT p95 s | vs its C=1 |")
print("|---|---|---|---|---|---|---|")
for s in servers:
    st = [r["streams"] for r in rows if r["server"] == s and "streams" in r]
    for c in sorted({x["C"] for x in st}):
        xs = [x for x in st if x["C"] == c]
        ttft = [t for x in xs for t in x["ttft_s"]]
        a = med([x["aggregate_tok_s"] for x in xs])
        agg[(s, c)] = a
        base = agg.get((s, 1))
        rel = f"{a / base:.2f}x" if base else ""
        d = med([x["aggregate_decode_tok_s"] for x in xs])
        print(f"| {s} | {c} | {a:.2f} | {d:.2f} | {pct(ttft, 0.5):.3f} | {pct(ttft, 0.95):.3f} | {rel} |")
if len(servers) > 1:
    print("\n| C | phi / llama-server aggregate tok/s |")
    print("|---|---|")
    for c in sorted({c for (_, c) in agg}):
        if ("llama-server", c) in agg:
            print(f"| {c} | {agg[('phi', c)] / agg[('llama-server', c)]:.2f}x |")
ld = [r for r in rows if "load" in r]
if ld:
    print("\n| server | TTFT 512-token prompt, idle s | with 3 streams decoding s | loaded / idle | background busy throughout |")
    print("|---|---|---|---|---|")
    for s in servers:
        xs = [r["load"] for r in ld if r["server"] == s]
        i = med([t for x in xs for t in x["idle_ttft_s"]])
        l = med([t for x in xs for t in x["loaded_ttft_s"]])
        busy = all(x["background_busy_throughout"] for x in xs)
        print(f"| {s} | {i:.3f} | {l:.3f} | {l / i:.2f} | {'yes' if busy else 'no (model too fast: not a load test)'} |")
print(f"\n| server | peak RSS MiB (VmHWM) | file + f16 KV ({np_} x {ctx} cells) MiB | ratio |")
print("|---|---|---|---|")
for r in rows:
    if "vmhwm_kib" in r:
        rss = r["vmhwm_kib"] * 1024
        print(f"| {r['server']} | {rss / 2**20:.0f} | {budget / 2**20:.0f} | {rss / budget:.3f} |")
EOF
