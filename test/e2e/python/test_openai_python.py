"""The official `openai` Python SDK against the running platform (run by test/e2e/openai-python.test.ts,
which passes E2E_BASE_URL and E2E_API_KEY of a fresh account)."""
import os

import openai
import pytest
from openai import OpenAI

BASE = os.environ.get("E2E_BASE_URL")
KEY = os.environ.get("E2E_API_KEY")
pytestmark = pytest.mark.skipif(not BASE or not KEY, reason="needs E2E_BASE_URL and E2E_API_KEY (run by the e2e suite)")


@pytest.fixture(scope="module")
def client():
    return OpenAI(api_key=KEY, base_url=f"{BASE}/v1", max_retries=0, timeout=170)


@pytest.fixture(scope="module")
def beta():
    return OpenAI(api_key=KEY, base_url=f"{BASE}/beta", max_retries=0, timeout=170)


def long_text(seed: str, sentences: int = 60) -> str:
    return " ".join(f"{seed} sentence {i}: lanterns {i * 7} over the quiet harbor." for i in range(sentences))


def test_chat_non_streaming(client):
    res = client.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "Hello"}], max_tokens=6)
    assert res.object == "chat.completion"
    assert res.choices[0].message.role == "assistant"
    assert res.choices[0].finish_reason in ("length", "stop")
    u = res.usage
    assert 0 < u.completion_tokens <= 6
    extra = u.model_extra
    assert u.prompt_tokens == extra["prompt_cache_hit_tokens"] + extra["prompt_cache_miss_tokens"]


def test_chat_streaming(client):
    stream = client.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "Count"}],
                                            max_tokens=8, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].choices[0].finish_reason == "length"
    assert chunks[-1].usage.completion_tokens == 8
    assert all(c.usage is None for c in chunks[:-1])


def test_logprobs(client):
    res = client.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "Hi"}],
                                         max_tokens=5, logprobs=True, top_logprobs=2)
    content = res.choices[0].logprobs.content
    assert len(content) == res.usage.completion_tokens
    assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in content)
    assert "".join(t.token for t in content) == res.choices[0].message.content


def test_reasoner_streams_reasoning_content(client):
    # Random weights never close the chain of thought: read some reasoning, then hang up.
    stream = client.chat.completions.create(model="deepseek-reasoner", messages=[{"role": "user", "content": "Think."}],
                                            max_tokens=8, stream=True)
    reasoning = ""
    for i, chunk in enumerate(stream):
        delta = chunk.choices[0].delta
        assert not delta.content
        reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
        if i >= 8 and reasoning:
            break
    stream.close()
    assert reasoning


def test_reasoner_rejects_logprobs(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="deepseek-reasoner", messages=[{"role": "user", "content": "x"}],
                                       max_tokens=4, logprobs=True)


def test_fim(beta):
    res = beta.completions.create(model="deepseek-chat", prompt="def f(x):\n    ", suffix="\n    return y\n", max_tokens=6)
    assert res.object == "text_completion"
    assert res.usage.completion_tokens > 0
    assert isinstance(res.choices[0].text, str)


def test_prefix_completion(beta):
    res = beta.chat.completions.create(model="deepseek-chat", max_tokens=4, messages=[
        {"role": "user", "content": "Write JSON."},
        {"role": "assistant", "content": "{\"a\": ", "prefix": True},
    ])
    assert res.usage.completion_tokens > 0


def test_cache_hit_on_shared_prefix(client):
    system = long_text("python-cache")
    def ask(q):
        return client.chat.completions.create(model="deepseek-chat", max_tokens=2, messages=[
            {"role": "system", "content": system}, {"role": "user", "content": q}])
    first, second = ask("first?"), ask("second?")
    assert first.usage.model_extra["prompt_cache_hit_tokens"] == 0
    hits = second.usage.model_extra["prompt_cache_hit_tokens"]
    assert hits > 0 and hits % 64 == 0


def test_bad_key_is_401():
    bad = OpenAI(api_key="sk-00000000000000000000000000000000", base_url=f"{BASE}/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
