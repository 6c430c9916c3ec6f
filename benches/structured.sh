#!/usr/bin/env bash
# Structured-output decode speed, phi against llama.cpp: unconstrained vs a
# JSON Schema, interleaved in every round (phi schema, phi plain, llama.cpp
# schema, llama.cpp plain, then again), same model, prompt, greedy sampling
# and thread count. Not a timed test: run it on a quiet machine.
#   benches/structured.sh MODEL.gguf [ROUNDS=3] [N=64] [THREADS=2]
# MODEL: the full-size synthetic Phi-3-mini with the real Phi-3 vocabulary
# (the mask cost depends on the vocabulary), e.g.
#   ~/.cache/phi-ref/models/phi3-mini-synth-q4_0.gguf   (../shared/reference/make_perf_models.sh)
# or, to try the script quickly, a small one:
#   cargo run --release -p phi --example synthetic_with_vocab -- \
#       /tmp/phi3v-small.gguf tests/fixtures/vocab/ggml-vocab-phi-3.gguf q4_0 1024x8
# PHI: the binary (default target/release/phi). LLAMA_PY: a Python with
# llama-cpp-python (default ~/.cache/phi-ref/venv/bin/python; LLAMA_PY=none
# skips llama.cpp). The schema asks for 40-60 objects, so random weights
# cannot finish it within N tokens: every run decodes N tokens.
# phi's tok/s: N tokens over the decode (from the end of the prompt);
# llama.cpp's: N - 1 tokens from the first sampled token to the last
# (benches/structured_llama.py). Output: the runs, then one Markdown table.
set -euo pipefail
MODEL="$1"; ROUNDS="${2:-3}"; N="${3:-64}"; T="${4:-2}"
HERE="$(cd "$(dirname "$0")" && pwd)"
PHI="${PHI:-$HERE/../target/release/phi}"
LLAMA_PY="${LLAMA_PY:-$HOME/.cache/phi-ref/venv/bin/python}"
PROMPT="Write the inventory as JSON:"
SCHEMA='{"type": "object", "properties": {"items": {"type": "array", "minItems": 40, "maxItems": 60,
  "items": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
  "id": {"type": "integer", "minimum": 0, "maximum": 99999}, "ok": {"type": "boolean"}},
  "required": ["name", "id", "ok"], "additionalProperties": false}}},
  "required": ["items"], "additionalProperties": false}'
llama=1
if [ "$LLAMA_PY" = none ] || ! "$LLAMA_PY" -c "import llama_cpp" 2>/dev/null; then
    echo "# llama-cpp-python not found at LLAMA_PY=$LLAMA_PY: phi only" >&2
    llama=0
fi
results=$(mktemp); trap 'rm -f "$results"' EXIT

phi_run() { # $1 = row label, rest = extra flags
    local label="$1"; shift
    local err tg mask
    err=$("$PHI" run -m "$MODEL" --raw -p "$PROMPT" -n "$N" -t "$T" --seed 1 --temp 0 "$@" 2>&1 >/dev/null || true)
    tg=$(grep -o 'generation: [0-9]* tokens, [0-9.]* tok/s' <<<"$err" | grep -o '[0-9.]* tok/s' | cut -d' ' -f1)
    mask=$(grep -o "[0-9]* µs per mask ([0-9.]* %" <<<"$err" | tr -d "(" || true)
    echo "$label tg${N}=${tg:-FAILED} tok/s${mask:+  mask: ${mask} of decode}"
    echo "$label|${tg:-nan}" >>"$results"
}
llama_run() { # $1 = row label, [$2 = schema]
    local label="$1"; shift
    local out tg
    out=$("$LLAMA_PY" "$HERE/structured_llama.py" "$MODEL" "$PROMPT" "$N" "$T" "$@" 2>&1 || true)
    tg=$(grep -o 'generation: [0-9]* tokens, [0-9.]* tok/s' <<<"$out" | grep -o '[0-9.]* tok/s' | cut -d' ' -f1)
    [ -n "$tg" ] || echo "$out" | tail -3 >&2
    echo "$label tg${N}=${tg:-FAILED} tok/s"
    echo "$label|${tg:-nan}" >>"$results"
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg), model $(basename "$MODEL"), $T threads, $N tokens, greedy"
for r in $(seq "$ROUNDS"); do
    echo "## round $r"
    phi_run "phi json-schema" --json-schema "$SCHEMA"
    phi_run "phi plain"
    if [ "$llama" = 1 ]; then
        llama_run "llama.cpp json-schema" "$SCHEMA"
        llama_run "llama.cpp plain"
    fi
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$results" "$N" "$T" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, v = line.rstrip("\n").split("|")
    rows.setdefault(label, []).append(float(v))
med = {k: statistics.median(v) for k, v in rows.items()}
n, t = sys.argv[2], sys.argv[3]
print(f"\n| decode tg{n}, {t} threads | runs (tok/s) | median tok/s | constrained / plain |")
print("|---|---|---|---|")
for engine in ("phi", "llama.cpp"):
    for mode in ("plain", "json-schema"):
        k = f"{engine} {mode}"
        if k not in rows:
            continue
        ratio = ""
        if mode == "json-schema" and f"{engine} plain" in med:
            ratio = f"{100 * med[k] / med[engine + ' plain']:.1f} %"
        runs = ", ".join(f"{v:g}" for v in rows[k])
        print(f"| {k} | {runs} | {med[k]:.2f} | {ratio} |")
if "llama.cpp json-schema" in med:
    r = med["phi json-schema"] / med["llama.cpp json-schema"]
    print(f"\nphi constrained / llama.cpp constrained: {r:.2f}x")
EOF
