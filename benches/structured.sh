#!/usr/bin/env bash
# Structured-output decode speed: `phi run` unconstrained vs `--json-schema`,
# interleaved (A B A B ...), same model, prompt, seed and thread count.
#   benches/structured.sh MODEL.gguf [ROUNDS=3] [N=64] [THREADS=2]
# MODEL: e.g. the full-size synthetic Phi-3-mini with the real Phi-3
# vocabulary (the mask cost depends on the vocabulary):
#   cargo run --release -p phi --example synthetic_with_vocab -- \
#       /tmp/phi3-mini-synth-q4_0.gguf tests/fixtures/vocab/ggml-vocab-phi-3.gguf q4_0
# PHI: the binary (default target/release/phi). The schema asks for 40-60
# objects, so random weights cannot finish it within N tokens: both runs
# decode exactly N tokens.
set -euo pipefail
MODEL="$1"; ROUNDS="${2:-3}"; N="${3:-64}"; T="${4:-2}"
HERE="$(cd "$(dirname "$0")" && pwd)"
PHI="${PHI:-$HERE/../target/release/phi}"
SCHEMA='{"type": "object", "properties": {"items": {"type": "array", "minItems": 40, "maxItems": 60,
  "items": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
  "id": {"type": "integer", "minimum": 0, "maximum": 99999}, "ok": {"type": "boolean"}},
  "required": ["name", "id", "ok"], "additionalProperties": false}}},
  "required": ["items"], "additionalProperties": false}'
run() { # $1 = label, rest = extra flags
    local label="$1"; shift
    local err
    err=$("$PHI" run -m "$MODEL" --raw -p "Write the inventory as JSON:" -n "$N" -t "$T" --seed 1 --temp 0 "$@" 2>&1 >/dev/null || true)
    local tg mask
    tg=$(grep -o 'generation: [0-9]* tokens, [0-9.]* tok/s' <<<"$err" | grep -o '[0-9.]* tok/s' | cut -d' ' -f1)
    mask=$(grep -o "[0-9]* µs per mask ([0-9.]* %" <<<"$err" | tr -d "(" || true)
    echo "$label tg${N}=${tg} tok/s${mask:+  mask: ${mask} of decode}"
}
echo "# $(date -u +%FT%TZ) $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg), model $(basename "$MODEL"), $T threads"
for r in $(seq "$ROUNDS"); do
    run "round $r plain      " 
    run "round $r json-schema" --json-schema "$SCHEMA"
done
