#!/usr/bin/env bash
# Interleaved A/B against llama.cpp on the same files and thread count:
# llama.cpp (../shared/reference/ref_bench.py) then `phi bench`, per model, two rounds.
#
#   ../shared/reference/setup-reference.sh      # once: builds llama.cpp into a venv
#   ../shared/reference/make_perf_models.sh     # once: full-size synthetic Phi-3-mini files
#   cargo build --release -p phi-cli
#   benches/vs-llama-cpp.sh [THREADS] > ab.log     (MODELS="q4_k_m" for a subset)
set -euo pipefail
T="${1:-2}"
CACHE="${PHI_CACHE:-$HOME/.cache/phi-ref}"
PY="$CACHE/venv/bin/python"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
PHI="${PHI:-$HERE/target/release/phi}"
REF="$HERE/../shared/reference/ref_bench.py"
for round in 1 2; do
  for q in ${MODELS:-q4_0 q4_k_m q8_0}; do
    f="$CACHE/models/phi3-mini-synth-$q.gguf"
    [ -f "$f" ] || { echo "missing $f (run make_perf_models.sh)" >&2; exit 1; }
    echo "## round $round $q load $(cut -d' ' -f1-3 /proc/loadavg)"
    "$PY" "$REF" --model "$f" --threads "$T" -p 128 -n 32 -r 2 2>/dev/null | tail -1 | sed 's/^/llama: /'
    /usr/bin/time -f "phi_peak_rss_kb %M" "$PHI" bench -m "$f" -p 128 -n 32 -t "$T" -r 2 --json 2>&1 | sed 's/^/phi: /'
  done
done
