"""The official OpenAI and Anthropic Python SDKs, unchanged, against Sluice.

Usage: python3 sdk_roundtrip.py BASE_URL   (BASE_URL like http://127.0.0.1:8080)
Exits non-zero with a message on the first failed check.
"""
import json
import sys

import anthropic
import openai

base = sys.argv[1].rstrip("/")
oa = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)

r = oa.chat.completions.create(model="priced", messages=[{"role": "user", "content": "hi sdk"}], seed=1, stop=["zz"])
assert r.choices[0].message.content == "echo: hi sdk", r
assert r.usage.completion_tokens == 3, r.usage

raw = oa.chat.completions.with_raw_response.create(model="priced", messages=[{"role": "user", "content": "hdr"}])
assert raw.headers["x-sluice-model"] == "priced", dict(raw.headers)

stream = oa.chat.completions.create(
    model="priced", messages=[{"role": "user", "content": "a b"}], stream=True, stream_options={"include_usage": True}
)
chunks = list(stream)
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert text == "echo: a b", text
assert chunks[-1].usage.completion_tokens == 3, chunks[-1]

tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
r = oa.chat.completions.create(model="m-tools", messages=[{"role": "user", "content": "wx"}], tools=tools)
assert r.choices[0].message.tool_calls[0].function.name == "get_weather", r
assert json.loads(r.choices[0].message.tool_calls[0].function.arguments) == {"city": "Oslo"}

e = oa.embeddings.create(model="priced", input=["x", "y"])
assert len(e.data) == 2, e

ids = [m.id for m in oa.models.list()]
assert "priced" in ids and "mock-a" in ids, ids

try:
    oa.chat.completions.create(model="m-fail422", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("expected an error")
except openai.UnprocessableEntityError as err:
    assert "mock failure 422" in str(err), err

try:
    oa.chat.completions.create(model="m", messages=[])
    raise AssertionError("expected an error")
except openai.BadRequestError as err:
    assert err.body["param"] == "messages", err.body

# OpenAI client, Anthropic upstream.
r = oa.chat.completions.create(model="claude", messages=[{"role": "user", "content": "cross"}])
assert r.choices[0].message.content == "echo: cross", r

an = anthropic.Anthropic(base_url=base, api_key="unused", max_retries=0)
m = an.messages.create(model="gpt-mock", max_tokens=32, messages=[{"role": "user", "content": "hello claude"}])
assert m.content[0].text == "echo: hello claude", m
assert m.stop_reason == "end_turn", m

with an.messages.stream(model="claude", max_tokens=32, messages=[{"role": "user", "content": "s t"}]) as s:
    streamed = "".join(s.text_stream)
    final = s.get_final_message()
assert streamed == "echo: s t", streamed
assert final.usage.output_tokens == 3, final.usage

with an.messages.stream(model="gpt-mock", max_tokens=32, messages=[{"role": "user", "content": "x y"}]) as s:
    streamed = "".join(s.text_stream)
assert streamed == "echo: x y", streamed

try:
    an.messages.create(model="nope-fail404", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    raise AssertionError("expected an error")
except anthropic.NotFoundError as err:
    assert "mock failure 404" in str(err), err

print("python SDKs: ok")
