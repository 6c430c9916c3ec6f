#!/usr/bin/env bash
# Interleaved A/B against llama.cpp on the same files and thread count:
# per round and model, llama.cpp with REPACK (its default), llama.cpp with
# `--no-repack` (its tiled K-quant GEMM), then `phi bench`. Quote phi against
# the better of the two llama.cpp lines.
#
#   ../shared/reference/setup-reference.sh      # once: builds llama.cpp into a venv
#   ../shared/reference/make_perf_models.sh     # once: full-size synthetic Phi-3-mini files
#   cargo build --release -p phi-cli
#   benches/vs-llama-cpp.sh [THREADS] [ROUNDS] > ab.log    (MODELS="q4_k_m" for a subset)
#
# The AVX2 path on an AVX-512 machine: an AVX2-only llama.cpp venv and phi forced to AVX2:
#   PHI_REF_VENV=$HOME/.cache/phi-ref/venv-avx2 PHI_ISA=avx2 benches/vs-llama-cpp.sh 2 2
set -euo pipefail
T="${1:-2}"
ROUNDS="${2:-2}"
CACHE="${PHI_CACHE:-$HOME/.cache/phi-ref}"
VENV="${PHI_REF_VENV:-$CACHE/venv}"
PY="$VENV/bin/python"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
PHI="${PHI:-$HERE/target/release/phi}"
REF="$HERE/../shared/reference/ref_bench.py"
P="${PP:-128}"
N="${TG:-32}"
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) | threads $T | pp$P tg$N | llama.cpp venv $VENV | PHI_ISA=${PHI_ISA:-auto} PHI_AVX2_DOT=${PHI_AVX2_DOT:-auto}"
for round in $(seq 1 "$ROUNDS"); do
  for q in ${MODELS:-q4_0 q4_k_m q8_0}; do
    f="$CACHE/models/phi3-mini-synth-$q.gguf"
    [ -f "$f" ] || { echo "missing $f (run make_perf_models.sh)" >&2; exit 1; }
    echo "## round $round $q load $(cut -d' ' -f1-3 /proc/loadavg)"
    "$PY" "$REF" --model "$f" --threads "$T" -p "$P" -n "$N" -r 2 2>/dev/null | tail -1 | sed 's/^/llama repack: /'
    "$PY" "$REF" --model "$f" --threads "$T" -p "$P" -n "$N" -r 2 --no-repack 2>/dev/null | tail -1 | sed 's/^/llama no-repack: /'
    /usr/bin/time -f "phi_peak_rss_kb %M" "$PHI" bench -m "$f" -p "$P" -n "$N" -t "$T" -r 2 --json 2>&1 | sed 's/^/phi: /'
  done
done
