"""Concurrent streaming clients against an OpenAI-compatible server (phi serve
or llama-server), standard library only.

    python3 benches/serve_client.py URL C [N_TOKENS=128] [PROMPT_TOKENS=128]
    python3 benches/serve_client.py URL --ttft-load [--bg 3] [--prompt 512] [--reps 3]

Streams: C clients start together, each streams one /v1/completions request
(a distinct prompt of about PROMPT_TOKENS tokens, sized through /tokenize;
client i sends prompt number --first-id + i;
N_TOKENS generated tokens, ignore_eos, temperature 0). Prints one JSON line:
aggregate generated tokens/s over the whole run, the aggregate decode rate
while all C streams were decoding, time to first token p50 / p95 and every
client's TTFT (`ttft_s`, to pool over rounds).

--ttft-load: the time to first token of a PROMPT-token prompt on an idle
server, then while BG other streams (128-token prompts) decode, REPS times
(idle, loaded, idle, loaded, ...; every prompt distinct, so no cached prefix
helps). The background streams are closed after each measurement (the server
cancels them). The server needs BG + 1 slots and a context of PROMPT + a few
tokens per slot. Prints one JSON line with both lists, their medians and
loaded / idle.
"""

import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse

ap = argparse.ArgumentParser()
ap.add_argument("url")
ap.add_argument("C", type=int, nargs="?", default=1)
ap.add_argument("N", type=int, nargs="?", default=128)
ap.add_argument("PROMPT_TOKENS", type=int, nargs="?", default=128)
ap.add_argument("--ttft-load", action="store_true")
ap.add_argument("--bg", type=int, default=3)
ap.add_argument("--prompt", type=int, default=512)
ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--first-id", type=int, default=0,
                help="streams: client i sends prompt FIRST_ID + i (distinct ids: no cached prefix)")
args = ap.parse_args()
u = urllib.parse.urlparse(args.url)
assert u.hostname in ("127.0.0.1", "localhost"), "loopback only"


def prompt(i, words):
    return f"Request {i}: " + " ".join(f"w{(i * 7919 + j * 31) % 997}" for j in range(words))


def n_tokens(text):
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request("POST", "/tokenize", json.dumps({"content": text}), {"Content-Type": "application/json"})
    n = len(json.loads(conn.getresponse().read())["tokens"])
    conn.close()
    return n


def words_for(tokens):
    """Words per prompt so that prompt 0 has about `tokens` tokens."""
    return max(1, round(100 * tokens / n_tokens(prompt(0, 100))))


def stream(text, n, on_token=None, stop=None):
    """Streams one completion; returns (t0, token timestamps, end, completion tokens).
    `on_token` is called after the first token; `stop` (an Event) ends the
    stream early by closing the connection."""
    body = json.dumps({
        "prompt": text, "max_tokens": n, "temperature": 0,
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
                if len(stamps) == 1 and on_token:
                    on_token()
        if stop is not None and stop.is_set():
            break
    conn.close()
    return t0, stamps, time.monotonic(), (usage["completion_tokens"] if usage else len(stamps))


def streams(C, N, prompt_tokens):
    words = words_for(prompt_tokens)
    results = [None] * C

    def client(i):
        results[i] = stream(prompt(args.first_id + i, words), N)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(C)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    start = min(r[0] for r in results)
    end = max(r[2] for r in results)
    total = sum(r[3] for r in results)
    ttft = sorted(r[1][0] - r[0] for r in results)
    # The window in which every stream had its first token and none had ended.
    w0 = max(r[1][0] for r in results)
    w1 = min(r[1][-1] for r in results)
    in_window = sum(sum(1 for s in r[1] if w0 < s <= w1) for r in results)
    decode = in_window / (w1 - w0) if w1 > w0 else float("nan")
    return {
        "C": C, "tokens": total, "wall_s": round(end - start, 3),
        "aggregate_tok_s": round(total / (end - start), 2),
        "aggregate_decode_tok_s": round(decode, 2),
        "ttft_p50_s": round(ttft[len(ttft) // 2], 3),
        "ttft_p95_s": round(ttft[min(len(ttft) - 1, int(0.95 * len(ttft)))], 3),
        "ttft_s": [round(t, 4) for t in ttft],
    }


def ttft_of(text):
    t0, stamps, _, _ = stream(text, 2)
    return stamps[0] - t0


# Tokens asked of each background stream: more than a slot holds, so they
# decode until closed (or until their context is full: phi ends them with
# `length`, llama-server shifts its context).
BG_TOKENS = 100_000


def ttft_under_load(bg, prompt_tokens, reps):
    long_words, bg_words = words_for(prompt_tokens), words_for(128)
    idle, loaded, busy = [], [], []
    for rep in range(reps):
        # Distinct prompts everywhere: ids 10_000+ never repeat a prefix.
        base = 10_000 + 100 * rep
        idle.append(ttft_of(prompt(base, long_words)))
        stop = threading.Event()
        started = threading.Semaphore(0)
        bg_out = [None] * bg

        def background(j):
            bg_out[j] = stream(prompt(base + 2 + j, bg_words), BG_TOKENS,
                               on_token=started.release, stop=stop)

        threads = [threading.Thread(target=background, args=(j,)) for j in range(bg)]
        for t in threads:
            t.start()
        for _ in range(bg):
            started.acquire()
        time.sleep(0.5)  # all in steady decode
        t_asked = time.monotonic()
        loaded.append(ttft_of(prompt(base + 1, long_words)))
        t_first = t_asked + loaded[-1]
        stop.set()
        for t in threads:
            t.join()
        # Whether every background stream was still decoding when the
        # measured prompt got its first token (a fast model may finish them).
        busy.append(all(r[1][-1] >= t_first for r in bg_out))
        time.sleep(1.0)  # the server cancels the closed streams
    mi, ml = statistics.median(idle), statistics.median(loaded)
    return {
        "mode": "ttft_under_load", "bg": bg, "prompt_tokens": prompt_tokens,
        "idle_ttft_s": [round(t, 4) for t in idle], "loaded_ttft_s": [round(t, 4) for t in loaded],
        "idle_median_s": round(mi, 4), "loaded_median_s": round(ml, 4),
        "loaded_over_idle": round(ml / mi, 3),
        "background_busy_throughout": all(busy),
    }


if args.ttft_load:
    print(json.dumps(ttft_under_load(args.bg, args.prompt, args.reps)))
else:
    print(json.dumps(streams(args.C, args.N, args.PROMPT_TOKENS)))
