"""The official `openai` Python package against a running `phi serve`.

Usage: OPENAI_BASE_URL=http://127.0.0.1:PORT/v1 python openai_client.py
Exits non-zero on the first failed check; every call is bounded (max_tokens,
timeout, no retries) and goes to the loopback address it is given.
"""

import json
import os
import sys

import openai

base = os.environ["OPENAI_BASE_URL"]
assert base.startswith("http://127.0.0.1:"), f"loopback only, got {base}"
client = openai.OpenAI(base_url=base, api_key="unused", timeout=60, max_retries=0)

models = client.models.list()
ids = [m.id for m in models.data]
assert len(ids) == 1, ids
model = ids[0]

messages = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello."},
]
chat = client.chat.completions.create(
    model=model, messages=messages, max_tokens=16, temperature=0
)
choice = chat.choices[0]
assert choice.message.role == "assistant"
assert choice.finish_reason in ("stop", "length"), choice.finish_reason
assert chat.usage.completion_tokens > 0
assert chat.usage.prompt_tokens_details.cached_tokens >= 0
text = choice.message.content

# Streaming gives the same text at temperature 0, and usage at the end.
pieces, finish, usage = [], None, None
stream = client.chat.completions.create(
    model=model,
    messages=messages,
    max_tokens=16,
    temperature=0,
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content:
            pieces.append(c.delta.content)
        if c.finish_reason:
            finish = c.finish_reason
assert "".join(pieces) == text, ("".join(pieces), text)
assert finish == choice.finish_reason
assert usage is not None and usage.completion_tokens == chat.usage.completion_tokens
# The second identical request reused the cached prompt.
assert usage.prompt_tokens_details.cached_tokens > 0, usage

# Text parts, logprobs.
chat = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    max_tokens=4,
    temperature=0,
    logprobs=True,
    top_logprobs=2,
)
lp = chat.choices[0].logprobs.content
assert len(lp) == chat.usage.completion_tokens and len(lp[0].top_logprobs) == 2

comp = client.completions.create(
    model=model, prompt="Once upon a time", max_tokens=8, temperature=0, seed=7
)
assert comp.object == "text_completion"
assert comp.usage.completion_tokens > 0
assert isinstance(comp.choices[0].text, str)

# Structured output: a JSON Schema through `response_format`.
schema = {
    "type": "object",
    "properties": {
        "n": {"type": "integer", "minimum": 0, "maximum": 999},
        "c": {"enum": ["red", "green", "blue"]},
    },
    "required": ["n", "c"],
    "additionalProperties": False,
}
chat = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Pick a number and a colour."}],
    max_tokens=64,
    temperature=0,
    response_format={
        "type": "json_schema",
        "json_schema": {"name": "pick", "strict": True, "schema": schema},
    },
)
assert chat.choices[0].finish_reason == "stop", chat.choices[0]
answer = json.loads(chat.choices[0].message.content)
assert set(answer) == {"n", "c"}, answer
assert isinstance(answer["n"], int) and 0 <= answer["n"] <= 999, answer
assert answer["c"] in ("red", "green", "blue"), answer

# Errors arrive as the client's exception types.
try:
    client.chat.completions.create(
        model=model, messages=messages, max_tokens=4, n=2
    )
    sys.exit("n=2 was accepted")
except openai.BadRequestError as e:
    assert e.status_code == 400 and "n" in str(e)
try:
    client.chat.completions.create(
        model=model, messages=messages, max_tokens=4, temperature=-1
    )
    sys.exit("a negative temperature was accepted")
except openai.BadRequestError as e:
    assert e.status_code == 400
try:
    client.with_options(base_url=base.replace("/v1", "/v2")).models.list()
    sys.exit("an unknown route answered")
except openai.NotFoundError as e:
    assert e.status_code == 404
try:
    client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=4,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "bad", "schema": {"type": "no-such-type"}},
        },
    )
    sys.exit("an invalid JSON Schema was accepted")
except openai.BadRequestError as e:
    assert e.status_code == 400 and e.param == "response_format", (e.param, str(e))

print("openai client: 8 passed, 0 failed")
