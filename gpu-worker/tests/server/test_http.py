"""The worker's HTTP surface, served by uvicorn on a real socket over the embedded model."""
import json
import time
from contextlib import contextmanager
from itertools import islice

import httpx
import pytest

from gpu_worker.engine.config import EngineConfig
from gpu_worker.prompt.chat_format import (EOS, TOOL_CALL_BEGIN, TOOL_CALL_END, TOOL_CALLS_BEGIN,
                                           TOOL_CALLS_END, TOOL_SEP)
from gpu_worker.server.local_server import LocalServer
from gpu_worker.server.worker import build_state

SECRET = "test-secret"
AUTH = {"Authorization": f"Bearer {SECRET}"}
TOTAL_BLOCKS = 64
CHAT = "/v1/chat/completions"
ALL_USAGE = {"include_usage": True, "continuous_usage_stats": True}


@contextmanager
def worker(checkpoint, blocks=TOTAL_BLOCKS, disk_cache_dir=None, **kw):
    """(url, state) of a worker on the embedded model with a 1024-token context, over uvicorn."""
    config = EngineConfig(num_cache_blocks=blocks, max_batch_tokens=256, max_model_len=1024,
                          disk_cache_dir=disk_cache_dir)
    server = LocalServer(build_state(checkpoint, config, ["deepseek-chat", "deepseek-reasoner"],
                                     secret=SECRET, **kw))
    try:
        yield server.url, server.state
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(embedded_checkpoint_dir, tmp_path_factory):
    with worker(embedded_checkpoint_dir, disk_cache_dir=str(tmp_path_factory.mktemp("disk"))) as s:
        yield s


@contextmanager
def connect(url):
    with httpx.Client(base_url=url, headers=AUTH, timeout=120) as c:
        yield c


@pytest.fixture
def client(server):
    with connect(server[0]) as c:
        yield c


def chat(content="Hello there, how are you?", **kw):
    return {"model": "deepseek-chat", "messages": [{"role": "user", "content": content}],
            "temperature": 0, "max_tokens": 8, **kw}


def post(client, body, path=CHAT, **kw) -> dict:
    r = client.post(path, json=body, **kw)
    assert r.status_code == 200, r.text
    return r.json()


def stream(client, body, path=CHAT, **kw) -> list[dict]:
    """The chunks of an SSE response, which must end with [DONE]."""
    with client.stream("POST", path, json=dict(body, stream=True), **kw) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def joined(chunks, field="content") -> str:
    return "".join(c["choices"][0]["delta"].get(field) or "" for c in chunks)


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


def tokens(server, text) -> list[int]:
    return server[1].tokenizer.encode(text, add_special_tokens=False).ids


def aborted(state) -> int:
    return sum(n for (_, _, reason), n in state.metrics.requests.items() if reason == "abort")


def said_whole_and_streamed(client, server, text, request) -> tuple[dict, list[dict]]:
    """The answers to request while the model 'says' the tokens of text (then repeats the last), to
    test the parsers in place."""
    engine, token_ids = server[1].engine.engine, tokens(server, text)
    original, answers = engine.sampler, []
    for send in (post, stream):
        said = 0

        def sample(logits, batch):
            nonlocal said
            chosen = [token_ids[min(said + i, len(token_ids) - 1)] for i in range(logits.shape[0])]
            said += len(chosen)
            return chosen, [None] * len(chosen)
        engine.sampler = sample
        try:
            answers.append(send(client, request))
        finally:
            engine.sampler = original
    return answers[0], answers[1]


@pytest.mark.parametrize("body, headers, status, message", [
    (chat(), {}, 401, "Authentication Fails (worker secret)"),
    (chat(), {"Authorization": "Bearer nope"}, 401, "Authentication Fails (worker secret)"),
    (chat(model="gpt-4"), AUTH, 400, "Model Not Exist"),
    (chat("hi " * 600, max_tokens=600), AUTH, 400,
     "This model's maximum context length is 1024 tokens. However, you requested "),
    (chat(temperature=3), AUTH, 422, "Invalid temperature value, the valid range of temperature is"),
    (chat(stop=[1]), AUTH, 400, "stop must be a string or a list of at most 16 strings"),
])
def test_refused_requests_get_an_error_body(server, body, headers, status, message):
    r = httpx.post(server[0] + CHAT, json=body, headers=headers)
    assert r.status_code == status
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"].startswith(message)


def test_non_stream_chat_completion(client):
    body = post(client, chat(), headers={"x-request-id": "req-123"})
    assert body["id"] == "req-123" and body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] in ("stop", "length")
    check_usage(body["usage"])
    assert body["usage"]["completion_tokens"] <= 8


def test_seeded_stream_with_continuous_usage_matches_non_stream(client):
    sampled = chat(max_tokens=6, temperature=1.0, seed=42)  # the seed makes sampling reproducible
    plain = post(client, sampled)
    chunks = stream(client, dict(sampled, stream_options=ALL_USAGE),
                    headers={"x-request-id": "s-1"})
    assert all(c["id"] == "s-1" and c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["created"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    completions = [c["usage"]["completion_tokens"] for c in chunks]  # usage on every chunk
    assert completions == sorted(completions)
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]
    assert joined(chunks) == plain["choices"][0]["message"]["content"]
    check_usage(last["usage"])
    assert last["usage"]["completion_tokens"] == plain["usage"]["completion_tokens"]


def test_prefix_cache_hits_within_a_namespace_only(client):
    long_text = " ".join(f"word{i}" for i in range(200))
    first, second, other = (post(client, chat(long_text), headers={"x-cache-namespace": namespace})
                            for namespace in ("acct-1", "acct-1", "acct-2"))
    assert first["usage"]["prompt_cache_hit_tokens"] == 0
    p = second["usage"]["prompt_tokens"]
    assert second["usage"]["prompt_cache_hit_tokens"] == (p - 1) // 64 * 64 > 0
    assert other["usage"]["prompt_cache_hit_tokens"] == 0
    assert second["choices"][0]["message"]["content"] == first["choices"][0]["message"]["content"]


def test_stop_string_and_length(client):
    full = post(client, chat(max_tokens=12))
    text = full["choices"][0]["message"]["content"]
    assert full["choices"][0]["finish_reason"] == "length" and full["usage"]["completion_tokens"] == 12
    stop = text[len(text) // 2: len(text) // 2 + 3]
    assert stop.strip(), text
    cut = post(client, chat(max_tokens=12, stop=[stop]))
    assert cut["choices"][0]["finish_reason"] == "stop" and cut["choices"][0]["stop_reason"] == stop
    assert cut["choices"][0]["message"]["content"] == text[: text.index(stop)]
    assert cut["usage"]["completion_tokens"] <= 12
    chunks = stream(client, chat(max_tokens=12, stop=stop, stream_options={"include_usage": True}))
    assert joined(chunks) == text[: text.index(stop)]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    # include_usage without continuous_usage_stats: usage null on all chunks but the last
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize("streamed", [True, False])
def test_client_disconnect_cancels_and_frees_blocks(client, server, monkeypatch, streamed):
    state = server[1]
    wait_idle(client)  # no earlier request still winding down
    before = aborted(state)
    # A step of at least 5 ms, so the 900 tokens take seconds: the embedded model decodes ~1 ms a token,
    # and on a busy machine the request could finish before the health check or the disconnect.
    runner = state.engine.engine.runner
    run = runner.run
    monkeypatch.setattr(runner, "run", lambda batch: (time.sleep(0.005), run(batch))[1])
    if streamed:
        with client.stream("POST", CHAT, json=chat(max_tokens=900, stream=True)) as r:
            next(islice(r.iter_lines(), 5, None))
            assert client.get("/health").json()["running"] == 1
    else:
        with pytest.raises(httpx.ReadTimeout):
            client.post(CHAT, json=chat(max_tokens=900), timeout=0.5)
    health = wait_idle(client)
    assert health["free_cache_blocks"] == health["total_cache_blocks"] == TOTAL_BLOCKS
    assert all(b.ref_count == 0 for b in state.engine.engine.block_manager.blocks)
    assert aborted(state) == before + 1


def test_logprobs_in_chat_whole_and_streamed(client):
    body = post(client, chat(logprobs=True, top_logprobs=3, max_tokens=4))
    content = body["choices"][0]["logprobs"]["content"]
    assert len(content) == body["usage"]["completion_tokens"]
    first = content[0]
    assert set(first) == {"token", "logprob", "bytes", "top_logprobs"} and len(first["top_logprobs"]) == 3
    assert first["logprob"] == pytest.approx(first["top_logprobs"][0]["logprob"])  # greedy picks the top one
    chunks = stream(client, chat(max_tokens=5, logprobs=True, top_logprobs=2))
    entries = [e for c in chunks if c["choices"][0]["logprobs"] for e in c["choices"][0]["logprobs"]["content"]]
    assert len(entries) == chunks[-1]["usage"]["completion_tokens"] == 5
    assert all(len(e["top_logprobs"]) == 2 and bytes(e["bytes"]).decode("utf-8", "replace") == e["token"]
               for e in entries)


def test_fim_completions_stream_and_not(client):
    body = {"model": "deepseek-chat", "prompt": "def add(a, b):\n", "suffix": "\n    return c\n",
            "max_tokens": 5, "temperature": 0, "logprobs": 2}
    out = post(client, body, "/v1/completions")
    assert out["object"] == "text_completion" and isinstance(out["choices"][0]["text"], str)
    lp = out["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["text_offset"]) == out["usage"]["completion_tokens"]
    check_usage(out["usage"])
    chunks = stream(client, dict(body, stream_options=ALL_USAGE), "/v1/completions")
    assert "".join(c["choices"][0]["text"] for c in chunks) == out["choices"][0]["text"]
    cache = ("prompt_cache_hit_tokens", "prompt_cache_miss_tokens")
    assert chunks[-1]["usage"] == out["usage"] | {k: chunks[-1]["usage"][k] for k in cache}


def test_openai_sdk_talks_to_the_worker(server):
    from openai import OpenAI
    sdk = OpenAI(base_url=server[0] + "/v1", api_key=SECRET)
    request = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
               "temperature": 0}
    out = sdk.chat.completions.create(**request)
    assert out.usage.completion_tokens == 3 and out.usage.total_tokens == out.usage.prompt_tokens + 3
    chunks = list(sdk.chat.completions.create(**request, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == out.choices[0].message.content


def test_engine_failure_ends_the_answer_and_turns_health_to_503(client, server, monkeypatch):
    """Once an engine step has failed, /health is 503 with status "error" so the gateway stops
    routing, though later steps succeed: the device is not trustworthy again."""
    wait_idle(client)
    healthy = client.get("/health")
    assert healthy.status_code == 200 and healthy.json()["status"] == "ok"
    assert healthy.json()["total_cache_blocks"] == TOTAL_BLOCKS and "error" not in healthy.json()
    assert {"running", "waiting", "free_cache_blocks", "cache"} <= set(healthy.json())
    runner, calls = server[1].engine.engine.runner, []
    run = runner.run

    def failing(batch):
        calls.append(1)
        if len(calls) in (4, 5):  # mid-stream, then the first step of the next request
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return run(batch)
    monkeypatch.setattr(runner, "run", failing)
    last = stream(client, chat(max_tokens=50, stream_options=ALL_USAGE))[-1]
    assert last["choices"][0]["finish_reason"] == "insufficient_system_resource"
    assert last["usage"]["completion_tokens"] == 3  # what was delivered before the fault
    check_usage(last["usage"])
    assert wait_idle(client)["free_cache_blocks"] == TOTAL_BLOCKS
    assert client.post(CHAT, json=chat()).status_code == 500
    assert client.post(CHAT, json=chat()).status_code == 200  # the worker carries on
    health = client.get("/health")
    assert health.status_code == 503
    assert health.json()["status"] == "error" and "illegal memory access" in health.json()["error"]
    assert health.json()["models"] == ["deepseek-chat", "deepseek-reasoner"]  # the shape stays
    metrics = client.get("/metrics").text
    assert 'gpu_worker_requests_total{endpoint="chat",model="deepseek-chat",' in metrics
    assert f"gpu_worker_free_cache_blocks {TOTAL_BLOCKS}" in metrics


def test_chat_prefix_completion_continues_the_assistant_message(client):
    messages = [{"role": "user", "content": "Write a haiku"}, {"role": "assistant", "content": "Autumn", "prefix": True}]
    body = post(client, chat(messages=messages, max_tokens=4))
    assert body["usage"]["completion_tokens"] == 4 and not body["choices"][0]["message"]["content"].startswith("Autumn")


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


def test_tool_calls_over_http_stream_and_not(client, server):
    said = (f"{TOOL_CALLS_BEGIN}{TOOL_CALL_BEGIN}function{TOOL_SEP}get_weather\n```json\n"
            f'{{"city": "Paris"}}\n```{TOOL_CALL_END}{TOOL_CALLS_END}{EOS}')
    body, chunks = said_whole_and_streamed(client, server, said, chat(tools=TOOLS, max_tokens=100))
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert body["usage"]["completion_tokens"] == len(tokens(server, said))
    deltas = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert all(d["index"] == 0 for d in deltas) and deltas[0]["function"]["name"] == "get_weather" and deltas[0]["id"]
    assert json.loads("".join(d["function"].get("arguments", "") for d in deltas)) == {"city": "Paris"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert joined(chunks) == ""


def test_reasoner_splits_reasoning_from_content_stream_and_not(client, server):
    thought = "Think hard.\n</think>"
    said = f"{thought}\n\nAnswer!{EOS}"
    request = chat(model="deepseek-reasoner", stream_options={"include_usage": True})
    body, chunks = said_whole_and_streamed(client, server, said, request)
    message = body["choices"][0]["message"]
    assert (message["reasoning_content"], message["content"]) == ("Think hard.", "Answer!")
    assert (joined(chunks, "reasoning_content"), joined(chunks)) == ("Think hard.", "Answer!")
    first_content = next(i for i, c in enumerate(chunks) if c["choices"][0]["delta"].get("content"))
    assert all(not c["choices"][0]["delta"].get("reasoning_content") for c in chunks[first_content:])
    for usage in (body["usage"], chunks[-1]["usage"]):
        assert usage["completion_tokens"] == len(tokens(server, said))
        reasoning_tokens = usage["completion_tokens_details"]["reasoning_tokens"]
        assert reasoning_tokens == len(tokens(server, thought))


def test_every_served_request_has_a_usage_record_with_what_it_was_sent(client):
    whole = post(client, chat(max_tokens=4), headers={"x-request-id": "gw-whole"})["usage"]
    streamed = stream(client, chat(max_tokens=3, stream_options={"include_usage": True}),
                      headers={"x-request-id": "gw-stream"})[-1]["usage"]
    listing = client.get("/v1/usage", params={"limit": 5000}).json()
    assert listing["object"] == "list" and listing["next_after"] is None
    wrong = {"Authorization": f"Bearer {SECRET}x"}
    assert client.get("/v1/usage", headers=wrong).status_code == 401
    bad = client.get("/v1/usage", params={"since": "yesterday"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    records = {r["request_id"]: r for r in listing["data"]}
    for rid, usage in (("gw-whole", whole), ("gw-stream", streamed)):
        rec = records[rid]
        for field in ("prompt_tokens", "prompt_cache_hit_tokens", "completion_tokens"):
            assert rec[field] == usage[field]
        assert (rec["endpoint"], rec["model"]) == ("chat", "deepseek-chat")
        assert rec["finish_reason"] in ("stop", "length")

