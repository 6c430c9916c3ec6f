#!/usr/bin/env bash
# Load to first token, phi.rs against llama.cpp, same files, same threads,
# interleaved (llama.cpp, phi, llama.cpp, phi, ...), warm page cache.
#
# llama.cpp (in-process, ../shared/reference/refcommon.py): time from before
# llama_model_load_from_file to the logits of the last prompt token (context
# of 4096 with an f16 KV cache, one llama_decode of the prompt).
# phi (whole process, so also process start, tokenizer build and sampling):
# wall time of `phi run -m M -p PROMPT -n 1 --temp 0 --raw -t T` (context
# 4096, f16 KV cache: its defaults for these files).
#
#   cargo build --release -p phi-cli
#   benches/first-token.sh [THREADS] [ROUNDS] > first-token.log
set -euo pipefail
T="${1:-2}"
ROUNDS="${2:-3}"
CACHE="${PHI_CACHE:-$HOME/.cache/phi-ref}"
PY="${PHI_REF_VENV:-$CACHE/venv}/bin/python"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
PHI="${PHI:-$HERE/target/release/phi}"
REFDIR="$HERE/../shared/reference"
PROMPT="The quick brown fox jumps over the lazy dog, and then it runs far away into the forest."

llama_first_token() {
  "$PY" - "$1" "$T" "$PROMPT" "$REFDIR" <<'EOF'
import sys, time
path, threads, prompt, refdir = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
sys.path.insert(0, refdir)
import refcommon as rc
rc.backend_init()
t0 = time.perf_counter()
m = rc.Model(path)
toks = m.tokenize(prompt, True, False)
ctx = rc.Context(m, n_ctx=4096, n_threads=threads, n_batch=512, kv_type="f16")
ctx.decode(toks, 0, "last")
t1 = time.perf_counter()
print(f"llama_first_token_ms {1000 * (t1 - t0):.0f} prompt_tokens {len(toks)}")
EOF
}

phi_first_token() {
  local s e
  s=$(date +%s%N)
  "$PHI" run -m "$1" -p "$PROMPT" -n 1 --temp 0 --raw -t "$T" >/dev/null 2>"$CACHE/phi-first-token.err"
  e=$(date +%s%N)
  echo "phi_first_token_ms $(((e - s) / 1000000)) ($(tail -1 "$CACHE/phi-first-token.err"))"
}

for q in ${MODELS:-q4_0 q4_k_m q8_0}; do
  f="$CACHE/models/phi3-mini-synth-$q.gguf"
  [ -f "$f" ] || { echo "missing $f (run make_perf_models.sh)" >&2; exit 1; }
  cat "$f" >/dev/null # warm the page cache
  for round in $(seq 1 "$ROUNDS"); do
    echo "## $q round $round load $(cut -d' ' -f1-3 /proc/loadavg)"
    llama_first_token "$f" 2>/dev/null | tail -1
    phi_first_token "$f"
  done
done
