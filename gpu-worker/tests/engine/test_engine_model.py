"""The engine over the embedded DeepSeek-V3-architecture model (random weights: equality, not content)."""
import random

import pytest
import torch

from gpu_worker.engine.config import EngineConfig
from gpu_worker.engine.engine import LLMEngine
from gpu_worker.engine.sequence import SamplingParams
from gpu_worker.model.loader import load_model

from .test_engine_fake import dense_greedy

GREEDY = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)


@pytest.fixture(scope="module")
def model(embedded_checkpoint_dir):
    return load_model(embedded_checkpoint_dir)


def engine(model, **kw):
    cfg = dict(num_cache_blocks=48, max_batch_tokens=512)
    cfg.update(kw)
    return LLMEngine(model, EngineConfig(**cfg))


def prompts(n, lo, hi, seed=0):
    r = random.Random(seed)
    return [[r.randrange(3, 128000) for _ in range(r.randrange(lo, hi))] for _ in range(n)]


def record_logits(eng):
    seen = []
    run = eng.runner.run

    def recording(batch):
        logits = run(batch)
        seen.append(logits.clone() if logits is not None else None)
        return logits
    eng.runner.run = recording
    return seen


def test_batched_greedy_equals_one_at_a_time(model):
    ps = prompts(5, 20, 150)
    alone = [engine(model).generate([p], GREEDY)[0].output_ids for p in ps]
    # A small token budget mixes decode steps with chunked prefills of later prompts.
    batched = engine(model, max_batch_tokens=96).generate(ps, GREEDY)
    assert [s.output_ids for s in batched] == alone


def test_paged_generation_matches_dense_forward(model):
    p = prompts(1, 130, 131, seed=3)[0]
    out = engine(model, max_batch_tokens=64).generate([p], GREEDY)[0].output_ids
    assert out == dense_greedy(model, p, len(out))


def test_prefix_cache_hit_gives_same_logits_as_cold_run(model):
    p = prompts(1, 200, 201, seed=1)[0]
    cold_engine = engine(model)
    cold_logits = record_logits(cold_engine)
    cold = cold_engine.generate([p], GREEDY)[0]
    warm_engine = engine(model)
    warm_engine.generate([p[:150] + [5, 6, 7]], GREEDY)  # caches blocks 0 and 1 (128 tokens)
    warm_logits = record_logits(warm_engine)
    warm = warm_engine.generate([p], GREEDY)[0]
    assert cold.num_cached_prompt_tokens == 0 and warm.num_cached_prompt_tokens == 128
    assert warm.output_ids == cold.output_ids
    torch.testing.assert_close(warm_logits[0], cold_logits[0], rtol=1e-4, atol=1e-4)
    # A prompt of exactly whole cached blocks reuses all but its final block.
    again = warm_engine.generate([p[:192]], GREEDY)[0]
    assert again.num_cached_prompt_tokens == 128


def test_disk_tier_round_trip_across_restart(model, tmp_path):
    p = prompts(1, 200, 201, seed=2)[0]
    d = str(tmp_path / "disk")
    first = engine(model, num_cache_blocks=8, disk_cache_dir=d)
    cold = first.generate([p], GREEDY)[0]
    first.generate(prompts(2, 250, 251, seed=7), GREEDY)  # evicts p's blocks to disk
    assert first.block_manager.stats.spilled_blocks >= 3
    warm = first.generate([p], GREEDY)[0]
    assert warm.num_cached_prompt_tokens == 192 and warm.output_ids == cold.output_ids
    first.shutdown()
    restarted = engine(model, num_cache_blocks=8, disk_cache_dir=d)
    logits = record_logits(restarted)
    again = restarted.generate([p], GREEDY)[0]
    assert again.num_cached_prompt_tokens == 192 and again.output_ids == cold.output_ids
    assert restarted.block_manager.stats.disk_hit_blocks == 3
    other = restarted.generate([p], GREEDY, namespace="another-account")[0]
    assert other.num_cached_prompt_tokens == 0
    assert logits[0] is not None


def test_preemption_keeps_greedy_output(model):
    ps = prompts(4, 100, 120, seed=5)
    alone = [engine(model).generate([p], GREEDY)[0].output_ids for p in ps]
    eng = engine(model, num_cache_blocks=5)
    seqs = eng.generate(ps, SamplingParams(temperature=0.0, max_tokens=30, ignore_eos=True))
    assert [s.output_ids[:8] for s in seqs] == alone
    assert sum(s.num_preemptions for s in seqs) > 0
