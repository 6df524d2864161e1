"""The worker's HTTP surface, served by uvicorn on a real socket over the embedded model."""
import asyncio
import json
import time

import httpx
import pytest

from gpu_worker.engine.config import EngineConfig
from gpu_worker.server.local_server import LocalServer
from gpu_worker.server.worker import build_state

SECRET = "test-secret"
AUTH = {"Authorization": f"Bearer {SECRET}"}
TOTAL_BLOCKS = 64


@pytest.fixture(scope="module")
def server(embedded_checkpoint_dir, tmp_path_factory):
    cfg = EngineConfig(num_cache_blocks=TOTAL_BLOCKS, max_batch_tokens=256, max_model_len=1024,
                       disk_cache_dir=str(tmp_path_factory.mktemp("disk")))
    state = build_state(embedded_checkpoint_dir, cfg, ["deepseek-chat", "deepseek-reasoner"], secret=SECRET)
    server = LocalServer(state)
    yield server.url, state
    server.stop()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server[0], headers=AUTH, timeout=60) as c:
        yield c


def chat(content="Hello there, how are you?", **kw):
    body = {"model": "deepseek-chat", "messages": [{"role": "user", "content": content}],
            "temperature": 0, "max_tokens": 8}
    body.update(kw)
    return body


def sse_events(response):
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[len("data: "):]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def check_usage(u):
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert u["prompt_cache_hit_tokens"] + u["prompt_cache_miss_tokens"] == u["prompt_tokens"]
    assert u["prompt_cache_hit_tokens"] % 64 == 0
    assert "reasoning_tokens" in u["completion_tokens_details"]


def wait_idle(client):
    for _ in range(200):
        h = client.get("/health").json()
        if h["running"] == 0 and h["waiting"] == 0:
            return h
        time.sleep(0.05)
    raise AssertionError(h)


def test_requests_without_the_secret_get_401(server):
    r = httpx.post(server[0] + "/v1/chat/completions", json=chat())
    assert r.status_code == 401 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = httpx.post(server[0] + "/v1/chat/completions", json=chat(), headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401


def test_non_stream_chat_completion(client):
    r = client.post("/v1/chat/completions", json=chat(), headers={"x-request-id": "req-123"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "req-123" and body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    check_usage(body["usage"])
    assert body["usage"]["completion_tokens"] <= 8


def test_stream_with_continuous_usage_matches_non_stream(client):
    body = chat(max_tokens=6)
    plain = client.post("/v1/chat/completions", json=body).json()
    with client.stream("POST", "/v1/chat/completions", json=dict(body, stream=True, stream_options={
            "include_usage": True, "continuous_usage_stats": True}), headers={"x-request-id": "s-1"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["id"] == "s-1" and c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["created"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["usage"] is not None for c in chunks)
    completions = [c["usage"]["completion_tokens"] for c in chunks]
    assert completions == sorted(completions)
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == plain["choices"][0]["message"]["content"]
    check_usage(last["usage"])
    assert last["usage"]["completion_tokens"] == plain["usage"]["completion_tokens"]


def test_stream_usage_only_on_last_chunk_without_continuous_stats(client):
    with client.stream("POST", "/v1/chat/completions",
                       json=chat(stream=True, stream_options={"include_usage": True})) as r:
        chunks = sse_events(r)[:-1]
    assert all(c["usage"] is None for c in chunks[:-1]) and chunks[-1]["usage"]["completion_tokens"] > 0


def test_prefix_cache_hits_within_a_namespace_only(client):
    long_text = " ".join(f"word{i}" for i in range(200))
    first = client.post("/v1/chat/completions", json=chat(long_text), headers={"x-cache-namespace": "acct-1"}).json()
    second = client.post("/v1/chat/completions", json=chat(long_text), headers={"x-cache-namespace": "acct-1"}).json()
    other = client.post("/v1/chat/completions", json=chat(long_text), headers={"x-cache-namespace": "acct-2"}).json()
    assert first["usage"]["prompt_cache_hit_tokens"] == 0
    p = second["usage"]["prompt_tokens"]
    assert second["usage"]["prompt_cache_hit_tokens"] == (p - 1) // 64 * 64 > 0
    assert other["usage"]["prompt_cache_hit_tokens"] == 0
    assert second["choices"][0]["message"]["content"] == first["choices"][0]["message"]["content"]


def test_stop_string_and_length(client):
    full = client.post("/v1/chat/completions", json=chat(max_tokens=12)).json()
    text = full["choices"][0]["message"]["content"]
    assert full["choices"][0]["finish_reason"] == "length" and full["usage"]["completion_tokens"] == 12
    stop = text[len(text) // 2: len(text) // 2 + 3]
    assert stop.strip(), text
    cut = client.post("/v1/chat/completions", json=chat(max_tokens=12, stop=[stop])).json()
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert cut["choices"][0]["message"]["content"] == text[: text.index(stop)]
    assert cut["usage"]["completion_tokens"] <= 12
    with client.stream("POST", "/v1/chat/completions", json=chat(max_tokens=12, stop=stop, stream=True)) as r:
        chunks = sse_events(r)[:-1]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == text[: text.index(stop)]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["usage"]["completion_tokens"] > 0


def test_client_disconnect_cancels_and_frees_blocks(client, server, monkeypatch):
    state = server[1]
    # A step of at least 5 ms, so the 900 tokens take seconds: the embedded model decodes ~1 ms a token,
    # and on a busy machine the request could finish before the health check or the disconnect.
    runner = state.engine.engine.runner
    run = runner.run
    monkeypatch.setattr(runner, "run", lambda batch: (time.sleep(0.005), run(batch))[1])
    with client.stream("POST", "/v1/chat/completions", json=chat(max_tokens=900, stream=True)) as r:
        for i, line in enumerate(r.iter_lines()):
            if i > 4:
                break
        assert client.get("/health").json()["running"] == 1
    health = wait_idle(client)
    assert health["free_cache_blocks"] == health["total_cache_blocks"] == TOTAL_BLOCKS
    assert all(b.ref_count == 0 for b in state.engine.engine.block_manager.blocks)
    aborted = [n for (endpoint, _, reason), n in state.metrics.requests.items() if reason == "abort"]
    assert sum(aborted) == 1


def test_too_long_prompt_is_a_context_error(client):
    r = client.post("/v1/chat/completions", json=chat("hi " * 600, max_tokens=600))
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["message"].startswith("This model's maximum context length is 1024 tokens. However, you requested ")
    assert set(err) == {"message", "type", "param", "code"}


def test_unknown_model_is_400(client):
    r = client.post("/v1/chat/completions", json=chat(model="gpt-4"))
    assert r.status_code == 400 and r.json()["error"]["message"] == "Model Not Exist"


def test_logprobs_in_chat(client):
    body = client.post("/v1/chat/completions", json=chat(logprobs=True, top_logprobs=3, max_tokens=4)).json()
    content = body["choices"][0]["logprobs"]["content"]
    assert len(content) == body["usage"]["completion_tokens"]
    first = content[0]
    assert set(first) == {"token", "logprob", "bytes", "top_logprobs"} and len(first["top_logprobs"]) == 3
    assert first["logprob"] == pytest.approx(first["top_logprobs"][0]["logprob"])  # greedy picks the top one


def test_reasoner_reports_reasoning(client):
    body = client.post("/v1/chat/completions", json=chat(model="deepseek-reasoner", max_tokens=5, seed=7)).json()
    msg = body["choices"][0]["message"]
    assert "reasoning_content" in msg
    usage = body["usage"]
    assert 0 < usage["completion_tokens_details"]["reasoning_tokens"] <= usage["completion_tokens"]


def test_seed_makes_sampling_reproducible(client):
    a = client.post("/v1/chat/completions", json=chat(temperature=1.0, seed=42, max_tokens=6)).json()
    b = client.post("/v1/chat/completions", json=chat(temperature=1.0, seed=42, max_tokens=6)).json()
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]


def test_fim_completions_stream_and_not(client):
    body = {"model": "deepseek-chat", "prompt": "def add(a, b):\n", "suffix": "\n    return c\n",
            "max_tokens": 5, "temperature": 0, "logprobs": 2}
    r = client.post("/v1/completions", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "text_completion" and isinstance(out["choices"][0]["text"], str)
    lp = out["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["text_offset"]) == out["usage"]["completion_tokens"]
    check_usage(out["usage"])
    with client.stream("POST", "/v1/completions", json=dict(body, stream=True, stream_options={
            "include_usage": True, "continuous_usage_stats": True})) as r:
        chunks = sse_events(r)[:-1]
    assert "".join(c["choices"][0]["text"] for c in chunks) == out["choices"][0]["text"]
    assert chunks[-1]["usage"] == out["usage"] | {"prompt_cache_hit_tokens": chunks[-1]["usage"]["prompt_cache_hit_tokens"],
                                                  "prompt_cache_miss_tokens": chunks[-1]["usage"]["prompt_cache_miss_tokens"]}


def test_health_and_metrics(client):
    h = client.get("/health").json()
    assert h["models"] == ["deepseek-chat", "deepseek-reasoner"] and h["total_cache_blocks"] == TOTAL_BLOCKS
    assert {"running", "waiting", "free_cache_blocks", "cache"} <= set(h)
    m = client.get("/metrics")
    assert m.status_code == 200 and "gpu_worker_requests_total" in m.text and "gpu_worker_free_cache_blocks" in m.text


def test_openai_sdk_talks_to_the_worker(server):
    from openai import OpenAI
    sdk = OpenAI(base_url=server[0] + "/v1", api_key=SECRET)
    out = sdk.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "hi"}],
                                      max_tokens=3, temperature=0)
    assert out.usage.completion_tokens == 3 and out.usage.total_tokens == out.usage.prompt_tokens + 3
    stream = sdk.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "hi"}],
                                         max_tokens=3, temperature=0, stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == out.choices[0].message.content


def test_failure_mid_stream_ends_with_usage(client, server):
    engine = server[1].engine.engine
    run, calls = engine.runner.run, []

    def failing(batch):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("simulated device fault")
        return run(batch)
    engine.runner.run = failing
    try:
        with client.stream("POST", "/v1/chat/completions", json=chat(max_tokens=50, stream=True, stream_options={
                "include_usage": True, "continuous_usage_stats": True})) as r:
            events = sse_events(r)
    finally:
        engine.runner.run = run
    assert events[-1] == "[DONE]"
    last = events[-2]
    assert last["choices"][0]["finish_reason"] == "insufficient_system_resource"
    assert last["usage"]["completion_tokens"] == 3  # what was delivered before the fault
    check_usage(last["usage"])
    health = wait_idle(client)
    assert health["free_cache_blocks"] == TOTAL_BLOCKS
    assert client.post("/v1/chat/completions", json=chat()).status_code == 200  # the worker carries on


def test_chat_prefix_completion_continues_the_assistant_message(client):
    messages = [{"role": "user", "content": "Write a haiku"}, {"role": "assistant", "content": "Autumn", "prefix": True}]
    r = client.post("/v1/chat/completions", json=chat(messages=messages, max_tokens=4))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["usage"]["completion_tokens"] == 4 and not body["choices"][0]["message"]["content"].startswith("Autumn")


class ScriptedSampler:
    """Makes the model 'say' chosen tokens, to drive the parsers through the whole server."""

    def __init__(self, script):
        self.script, self.pos = script, 0

    def __call__(self, logits, batch):
        tokens = []
        for _ in range(logits.shape[0]):
            tokens.append(self.script[min(self.pos, len(self.script) - 1)])
            self.pos += 1
        return tokens, [None] * len(tokens)


def scripted(server, script):
    engine = server[1].engine.engine
    original = engine.sampler
    engine.sampler = ScriptedSampler(script)
    return engine, original


def tool_script(tok):
    def ids(text):
        return tok.encode(text, add_special_tokens=False).ids
    call = ([tok.token_to_id("<｜tool▁call▁begin｜>")] + ids("function") + [tok.token_to_id("<｜tool▁sep｜>")]
            + ids('get_weather\n```json\n{"city": "Paris"}\n```') + [tok.token_to_id("<｜tool▁call▁end｜>")])
    return ([tok.token_to_id("<｜tool▁calls▁begin｜>")] + call + [tok.token_to_id("<｜tool▁calls▁end｜>")]
            + [tok.token_to_id("<｜end▁of▁sentence｜>")])


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
    "city": {"type": "string"}}, "required": ["city"]}}}]


def test_tool_calls_over_http_stream_and_not(client, server):
    tok = server[1].tokenizer
    script = tool_script(tok)
    engine, original = scripted(server, script)
    try:
        body = client.post("/v1/chat/completions", json=chat(tools=TOOLS, max_tokens=100)).json()
        engine.sampler = ScriptedSampler(script)
        with client.stream("POST", "/v1/chat/completions", json=chat(tools=TOOLS, max_tokens=100, stream=True)) as r:
            chunks = sse_events(r)[:-1]
    finally:
        engine.sampler = original
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert body["usage"]["completion_tokens"] == len(script)
    deltas = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert all(d["index"] == 0 for d in deltas) and deltas[0]["function"]["name"] == "get_weather" and deltas[0]["id"]
    assert json.loads("".join(d["function"].get("arguments", "") for d in deltas)) == {"city": "Paris"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == ""


def test_reasoner_streams_reasoning_then_content(client, server):
    tok = server[1].tokenizer
    script = tok.encode("Think hard.\n</think>\n\nAnswer!", add_special_tokens=False).ids + [tok.token_to_id("<｜end▁of▁sentence｜>")]
    engine, original = scripted(server, script)
    try:
        with client.stream("POST", "/v1/chat/completions", json=chat(model="deepseek-reasoner", stream=True,
                                                                     stream_options={"include_usage": True})) as r:
            chunks = sse_events(r)[:-1]
    finally:
        engine.sampler = original
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content") or "" for c in chunks)
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert reasoning == "Think hard." and content == "Answer!"
    first_content = next(i for i, c in enumerate(chunks) if c["choices"][0]["delta"].get("content"))
    assert all(not c["choices"][0]["delta"].get("reasoning_content") for c in chunks[first_content:])
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == len(script)
    assert usage["completion_tokens_details"]["reasoning_tokens"] == len(tok.encode("Think hard.\n</think>", add_special_tokens=False).ids)


def test_non_stream_client_disconnect_cancels(server):
    state = server[1]
    before = sum(n for (_, _, reason), n in state.metrics.requests.items() if reason == "abort")

    async def go():
        async with httpx.AsyncClient(base_url=server[0], headers=AUTH) as c:
            with pytest.raises(httpx.TimeoutException):
                await c.post("/v1/chat/completions", json=chat(max_tokens=900), timeout=0.5)
    asyncio.run(go())
    with httpx.Client(base_url=server[0]) as c:
        health = wait_idle(c)
    assert health["free_cache_blocks"] == TOTAL_BLOCKS
    assert sum(n for (_, _, reason), n in state.metrics.requests.items() if reason == "abort") == before + 1


def test_streamed_logprobs_cover_every_token(client):
    with client.stream("POST", "/v1/chat/completions", json=chat(max_tokens=5, logprobs=True, top_logprobs=2,
                                                                 stream=True)) as r:
        chunks = sse_events(r)[:-1]
    entries = [e for c in chunks if c["choices"][0]["logprobs"] for e in c["choices"][0]["logprobs"]["content"]]
    assert len(entries) == chunks[-1]["usage"]["completion_tokens"] == 5
    assert all(len(e["top_logprobs"]) == 2 and bytes(e["bytes"]).decode("utf-8", "replace") == e["token"]
               for e in entries)
