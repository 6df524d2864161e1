"""deepseek-reasoner's thinking budget: bounded by --max-reasoning-tokens, and shrunk to what the
worker's cache holds instead of refusing a request whose answer fits."""

import httpx
import pytest

from gpu_worker.engine.config import EngineConfig
from gpu_worker.server.local_server import LocalServer
from gpu_worker.server.worker import build_state

SECRET = "budget-secret"


@pytest.fixture(scope="module")
def small_cache_server(embedded_checkpoint_dir, tmp_path_factory):
    # 8 blocks of 64 = 512 tokens of cache, less than the 1024-token context: the default
    # 32768-token budget cannot fit and must shrink.
    cfg = EngineConfig(num_cache_blocks=8, max_batch_tokens=256, max_model_len=1024)
    state = build_state(embedded_checkpoint_dir, cfg, ["deepseek-chat", "deepseek-reasoner"], secret=SECRET)
    small_budget = build_state(embedded_checkpoint_dir, EngineConfig(num_cache_blocks=64, max_batch_tokens=256, max_model_len=1024),
                               ["deepseek-reasoner"], secret=SECRET, max_reasoning_tokens=3)
    servers = [LocalServer(s) for s in (state, small_budget)]
    yield [server.url for server in servers]
    for server in servers:
        server.stop()


def ask(url: str, max_tokens: int) -> httpx.Response:
    body = {"model": "deepseek-reasoner", "max_tokens": max_tokens, "temperature": 0,
            "messages": [{"role": "user", "content": "Think, then answer."}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {SECRET}"}, timeout=120)


def test_reasoner_budget_shrinks_to_the_cache_instead_of_refusing(small_cache_server):
    res = ask(small_cache_server[0], 4)
    assert res.status_code == 200, res.text
    usage = res.json()["usage"]
    assert usage["prompt_tokens"] + usage["completion_tokens"] <= 8 * 64


def test_max_reasoning_tokens_bounds_the_chain_of_thought(small_cache_server):
    res = ask(small_cache_server[1], 2)
    assert res.status_code == 200, res.text
    usage = res.json()["usage"]
    assert usage["completion_tokens"] <= 2 + 3
