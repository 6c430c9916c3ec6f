"""llama.cpp's decode speed, unconstrained or under a JSON Schema, through
llama-cpp-python (the reference venv, ~/.cache/phi-ref/venv); one run per
call, so benches/structured.sh can interleave it with phi's runs.

    python structured_llama.py MODEL.gguf PROMPT N THREADS [SCHEMA_JSON]

Greedy (temperature 0), N generated tokens whatever the model picks (the
generator ignores end-of-generation; the schema of structured.sh cannot be
completed in N tokens anyway). With SCHEMA_JSON, the schema goes through
llama-cpp-python's converter (`LlamaGrammar.from_json_schema`, a GBNF
grammar) and llama.cpp's grammar sampler masks every token.

Prints one line: `generation: N tokens, X tok/s` (X = (N - 1) tokens over
the time from the first sampled token to the last: decode + sampling, no
prompt), then the text, both on stdout.
"""

import sys
import time

from llama_cpp import Llama, LlamaGrammar


def main():
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    path, prompt, n, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    schema = sys.argv[5] if len(sys.argv) == 6 else None
    if n < 2:
        sys.exit("N must be at least 2")
    llm = Llama(model_path=path, n_ctx=max(512, n + 64), n_threads=threads,
                n_threads_batch=threads, seed=1, verbose=False)
    grammar = LlamaGrammar.from_json_schema(schema, verbose=False) if schema else None
    tokens = llm.tokenize(prompt.encode(), add_bos=True)
    out, stamps = [], []
    for tok in llm.generate(tokens, temp=0.0, top_k=1, top_p=1.0, min_p=0.0,
                            repeat_penalty=1.0, grammar=grammar):
        stamps.append(time.perf_counter())
        out.append(tok)
        if len(out) == n:
            break
    rate = (len(out) - 1) / max(stamps[-1] - stamps[0], 1e-9)
    print(f"generation: {len(out)} tokens, {rate:.2f} tok/s")
    print(llm.detokenize(out).decode(errors="replace"))


if __name__ == "__main__":
    main()
