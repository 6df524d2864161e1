"""deepseek-reasoner's thinking budget: bounded by --max-reasoning-tokens, and shrunk to what the
worker's cache holds instead of refusing a request whose answer fits."""
import pytest

from .test_http import chat, connect, post, worker


@pytest.mark.parametrize("blocks, max_reasoning_tokens, max_tokens", [
    (8, 32768, 4),  # 512 tokens of cache, less than the 1024-token context: the budget must shrink
    (64, 3, 2),
])
def test_reasoner_budget(embedded_checkpoint_dir, blocks, max_reasoning_tokens, max_tokens):
    request = chat("Think, then answer.", model="deepseek-reasoner", max_tokens=max_tokens)
    with worker(embedded_checkpoint_dir, blocks, max_reasoning_tokens=max_reasoning_tokens) as s:
        with connect(s[0]) as client:
            usage = post(client, request)["usage"]
    assert usage["prompt_tokens"] + usage["completion_tokens"] <= blocks * 64
    assert usage["completion_tokens"] <= max_tokens + max_reasoning_tokens
