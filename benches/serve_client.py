"""Concurrent streaming clients against an OpenAI-compatible server (phi serve
or llama-server), standard library only.

    python3 benches/serve_client.py URL C [N_TOKENS] [PROMPT_TOKENS]

C clients start together, each streams one /v1/completions request (a distinct
prompt of about PROMPT_TOKENS tokens, sized through /tokenize; N_TOKENS
generated tokens, ignore_eos, temperature 0).
Prints one JSON line: aggregate generated tokens/s over the whole run, the
aggregate decode rate while all C streams were decoding, and TTFT p50 / p95.
"""

import http.client
import json
import sys
import threading
import time
import urllib.parse

url, C = sys.argv[1], int(sys.argv[2])
N = int(sys.argv[3]) if len(sys.argv) > 3 else 64
PROMPT_TOKENS = int(sys.argv[4]) if len(sys.argv) > 4 else 128
u = urllib.parse.urlparse(url)
assert u.hostname in ("127.0.0.1", "localhost"), "loopback only"


def prompt(i, words):
    return f"Request {i}: " + " ".join(f"w{(i * 7919 + j * 31) % 997}" for j in range(words))


def n_tokens(text):
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request("POST", "/tokenize", json.dumps({"content": text}), {"Content-Type": "application/json"})
    n = len(json.loads(conn.getresponse().read())["tokens"])
    conn.close()
    return n


# Words per prompt so that prompt 0 has about PROMPT_TOKENS tokens.
WORDS = max(1, round(100 * PROMPT_TOKENS / n_tokens(prompt(0, 100))))

results = [None] * C


def client(i):
    body = json.dumps({
        "prompt": prompt(i, WORDS), "max_tokens": N, "temperature": 0,
        "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True},
    })
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    t0 = time.monotonic()
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    stamps, usage = [], None
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        ev = json.loads(line[6:])
        if ev.get("usage"):
            usage = ev["usage"]
        for c in ev.get("choices", []):
            if c.get("text") or c.get("finish_reason") is None:
                stamps.append(time.monotonic())
    conn.close()
    results[i] = {"t0": t0, "stamps": stamps, "end": time.monotonic(),
                  "tokens": usage["completion_tokens"] if usage else len(stamps)}


threads = [threading.Thread(target=client, args=(i,)) for i in range(C)]
for t in threads:
    t.start()
for t in threads:
    t.join()
start = min(r["t0"] for r in results)
end = max(r["end"] for r in results)
total = sum(r["tokens"] for r in results)
ttft = sorted(r["stamps"][0] - r["t0"] for r in results)
# The window in which every stream had its first token and none had ended.
w0 = max(r["stamps"][0] for r in results)
w1 = min(r["stamps"][-1] for r in results)
in_window = sum(sum(1 for s in r["stamps"] if w0 < s <= w1) for r in results)
decode = in_window / (w1 - w0) if w1 > w0 else float("nan")
print(json.dumps({
    "C": C, "tokens": total, "wall_s": round(end - start, 3),
    "aggregate_tok_s": round(total / (end - start), 2),
    "aggregate_decode_tok_s": round(decode, 2),
    "ttft_p50_s": round(ttft[len(ttft) // 2], 3),
    "ttft_p95_s": round(ttft[min(len(ttft) - 1, int(0.95 * len(ttft)))], 3),
}))
