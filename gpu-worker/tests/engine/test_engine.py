"""The engine over a tiny DeepSeek-V3 model (fast) and over the embedded one (random weights:
equality, not content)."""
import random
from dataclasses import dataclass

import pytest
import torch

from gpu_worker.engine.config import EngineConfig
from gpu_worker.engine.engine import LLMEngine
from gpu_worker.engine.sequence import SamplingParams
from gpu_worker.model.loader import load_model
from tests.model.tiny import hf_config, random_model

GREEDY = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)


@dataclass
class Setup:
    model: object
    block: int  # cache block size; prompt lengths below are in blocks
    vocab: int

    def engine(self, **kw) -> LLMEngine:
        cfg = dict(block_size=self.block, num_cache_blocks=48, max_batch_tokens=8 * self.block)
        return LLMEngine(self.model, EngineConfig(**{**cfg, **kw}))

    def prompts(self, n: int, lo: float, hi: float, seed: int = 0) -> list[list[int]]:
        r = random.Random(seed)
        lengths = [r.randrange(int(lo * self.block), int(hi * self.block) + 1) for _ in range(n)]
        return [[r.randrange(3, self.vocab) for _ in range(k)] for k in lengths]


@pytest.fixture(scope="module")
def tiny():
    return Setup(random_model(hf_config()), block=8, vocab=101)


@pytest.fixture(scope="module", params=["tiny", "embedded"])
def setup(request):
    if request.param == "tiny":
        return request.getfixturevalue("tiny")
    model = load_model(request.getfixturevalue("embedded_checkpoint_dir"))
    return Setup(model, block=64, vocab=128000)


def dense_greedy(model, prompt, n):
    ids = list(prompt)
    for _ in range(n):
        ids.append(int(model.forward_dense(torch.tensor([ids]))[0, -1].argmax()))
    return ids[len(prompt):]


def record_logits(eng):
    seen, run = [], eng.runner.run

    def recording(chunks):
        logits = run(chunks)
        seen.append(None if logits is None else logits.clone())
        return logits
    eng.runner.run = recording
    return seen


def test_paged_chunked_generation_matches_the_dense_forward(setup):
    p = setup.prompts(1, 2, 2.1, seed=3)[0]
    out = setup.engine(max_batch_tokens=setup.block).generate([p], GREEDY)[0].output_ids
    assert out == dense_greedy(setup.model, p, len(out))


def test_batched_equals_one_at_a_time_with_chunked_prefill(setup):
    ps = setup.prompts(5, 0.3, 2.3)
    alone = [setup.engine().generate([p], GREEDY)[0].output_ids for p in ps]
    # A small token budget mixes decode steps with chunked prefills of later prompts.
    batched = setup.engine(max_batch_tokens=3 * setup.block // 2).generate(ps, GREEDY)
    assert [s.output_ids for s in batched] == alone


def test_preemption_under_memory_pressure_keeps_greedy_output(setup):
    ps = setup.prompts(4, 1.6, 1.9, seed=5)
    alone = [setup.engine().generate([p], GREEDY)[0].output_ids for p in ps]
    eng = setup.engine(num_cache_blocks=5)
    params = SamplingParams(temperature=0.0, max_tokens=setup.block // 2, ignore_eos=True)
    seqs = eng.generate(ps, params)
    assert [s.output_ids[:8] for s in seqs] == [a[:setup.block // 2] for a in alone]
    assert sum(s.num_preemptions for s in seqs) > 0
    assert eng.block_manager.num_free_blocks == 5


def test_prefix_hit_gives_the_cold_run_s_logits_and_counts_whole_blocks(setup):
    b = setup.block
    p = setup.prompts(1, 3.2, 3.2, seed=1)[0]
    cold_engine = setup.engine()
    cold_logits = record_logits(cold_engine)
    cold = cold_engine.generate([p], GREEDY)[0]
    warm_engine = setup.engine()
    warm_engine.generate([p[:2 * b + b // 2] + [5, 6, 7]], GREEDY)  # caches blocks 0 and 1
    warm_logits = record_logits(warm_engine)
    warm = warm_engine.generate([p], GREEDY)[0]
    assert cold.num_cached_prompt_tokens == 0 and warm.num_cached_prompt_tokens == 2 * b
    assert warm.output_ids == cold.output_ids
    torch.testing.assert_close(warm_logits[0], cold_logits[0], rtol=1e-4, atol=1e-4)
    # A prompt of exactly whole cached blocks reuses all but its final block.
    assert warm_engine.generate([p[:3 * b]], GREEDY)[0].num_cached_prompt_tokens == 2 * b
    assert warm_engine.generate([p], GREEDY, namespace="other")[0].num_cached_prompt_tokens == 0


def test_disk_tier_round_trip_and_restart(setup, tmp_path):
    b, d = setup.block, str(tmp_path / "disk")
    p = setup.prompts(1, 3.2, 3.2, seed=2)[0]
    first = setup.engine(num_cache_blocks=8, disk_cache_dir=d)
    cold = first.generate([p], GREEDY)[0]
    first.generate(setup.prompts(2, 3.9, 3.9, seed=7), GREEDY)  # evicts p's blocks to disk
    assert first.block_manager.stats["spilled_blocks"] >= 3
    warm = first.generate([p], GREEDY)[0]
    assert warm.num_cached_prompt_tokens == 3 * b and warm.output_ids == cold.output_ids
    first.shutdown()
    restarted = setup.engine(num_cache_blocks=8, disk_cache_dir=d)
    again = restarted.generate([p], GREEDY)[0]
    assert again.num_cached_prompt_tokens == 3 * b and again.output_ids == cold.output_ids
    assert restarted.block_manager.stats["disk_hit_blocks"] == 3
    assert restarted.generate([p], GREEDY, namespace="b")[0].num_cached_prompt_tokens == 0


def test_disk_tier_is_bounded(tiny, tmp_path):
    d = tmp_path / "disk"
    eng = tiny.engine(num_cache_blocks=8, disk_cache_dir=str(d), disk_cache_max_bytes=6000)
    eng.generate(tiny.prompts(6, 5, 5), GREEDY)
    eng.disk.flush()
    assert eng.disk.writes > 0 and eng.disk.total_bytes <= 6000
    assert sum(f.stat().st_size for f in d.iterdir()) <= 6000


def test_cancellation_frees_every_block(tiny):
    eng = tiny.engine(num_cache_blocks=64)
    for i, p in enumerate(tiny.prompts(4, 2.5, 3.7)):
        eng.add_request(f"r{i}", p, SamplingParams(max_tokens=100, ignore_eos=True))
    for _ in range(3):
        eng.step()
    assert eng.block_manager.num_free_blocks < 64
    for i in range(4):
        assert eng.abort(f"r{i}").finish_reason == "abort"
    assert eng.block_manager.num_free_blocks == 64 and not eng.scheduler.has_work()
    assert all(b.ref_count == 0 for b in eng.block_manager.blocks)


def test_seeded_sampling_is_reproducible_in_any_batch(tiny):
    p = tiny.prompts(1, 0.6, 5)[0]
    params = SamplingParams(temperature=0.9, top_p=0.9, seed=1234, max_tokens=10, ignore_eos=True)
    alone = tiny.engine().generate([p], params)[0].output_ids
    others = tiny.prompts(3, 0.6, 5, seed=5)
    assert tiny.engine().generate(others + [p], [GREEDY] * 3 + [params])[3].output_ids == alone


def test_stop_token_and_max_tokens_finish_reasons(tiny):
    eng = tiny.engine()
    p = tiny.prompts(1, 0.6, 5)[0]
    first = eng.generate([p], GREEDY)[0].output_ids
    s = eng.generate([p], SamplingParams(temperature=0, max_tokens=12, stop_token_ids=(first[2],)))[0]
    end = next(i for i, t in enumerate(first) if t in (first[2], 1))  # 1: the default EOS id
    assert s.finish_reason == "stop" and s.output_ids == first[:end + 1]
    s = eng.generate([p], SamplingParams(temperature=0, max_tokens=5, ignore_eos=True))[0]
    assert s.finish_reason == "length" and len(s.output_ids) == 5


def test_presence_penalty_counts_live_on_the_device_for_the_request_only(tiny):
    eng = tiny.engine()
    p = tiny.prompts(1, 0.6, 5)[0]
    repeat = SamplingParams(temperature=0, max_tokens=30, ignore_eos=True)
    plain = eng.generate([p], repeat)[0].output_ids
    assert len(set(plain)) < len(plain)  # greedy on the tiny model repeats itself
    penalised = SamplingParams(temperature=0, max_tokens=30, ignore_eos=True, presence_penalty=100.0)
    both = eng.generate([p, p], [repeat, penalised])
    assert both[0].output_ids == plain  # its neighbour's penalty does not leak into it
    assert len(set(both[1].output_ids)) == 30
    assert not eng.output_counts.rows  # released when the requests finished
    seq = eng.add_request("aborted", p, penalised)
    while seq.num_output_tokens < 3:
        eng.step()
    assert "aborted" in eng.output_counts.rows
    eng.abort("aborted")
    assert not eng.output_counts.rows
