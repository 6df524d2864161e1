"""Engine mechanics over a tiny paged stand-in model (fast; the real model is in test_engine_model.py)."""
import random

import torch

from gpu_worker.engine.config import EngineConfig
from gpu_worker.engine.engine import LLMEngine
from gpu_worker.engine.sequence import SamplingParams

from .fake_model import FakeModel

GREEDY = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True)


def make_engine(**kw):
    cfg = dict(block_size=8, num_cache_blocks=64, max_batch_tokens=64)
    cfg.update(kw)
    return LLMEngine(FakeModel(), EngineConfig(**cfg))


def dense_greedy(model, prompt, n):
    ids = list(prompt)
    for _ in range(n):
        ids.append(int(model.forward_dense(torch.tensor([ids]))[0, -1].argmax()))
    return ids[len(prompt):]


def prompts(n, lo=5, hi=40, seed=0):
    r = random.Random(seed)
    return [[r.randrange(2, 500) for _ in range(r.randrange(lo, hi))] for _ in range(n)]


def test_paged_generation_matches_dense_reference():
    eng = make_engine()
    p = prompts(1, 30, 31)[0]
    (s,) = eng.generate([p], GREEDY)
    assert s.output_ids == dense_greedy(eng.model, p, 12)


def test_batched_equals_one_at_a_time_with_chunked_prefill():
    ps = prompts(6)
    one = [make_engine().generate([p], GREEDY)[0].output_ids for p in ps]
    eng = make_engine(max_batch_tokens=16)  # forces chunked prefill and mixed steps
    assert [s.output_ids for s in eng.generate(ps, GREEDY)] == one


def test_preemption_under_memory_pressure_still_gives_same_tokens():
    ps = prompts(6, 20, 30)
    one = [make_engine().generate([p], GREEDY)[0].output_ids for p in ps]
    eng = make_engine(num_cache_blocks=12)
    seqs = eng.generate(ps, GREEDY)
    assert [s.output_ids for s in seqs] == one
    assert sum(s.num_preemptions for s in seqs) > 0
    assert eng.block_manager.num_free_blocks == 12


def test_prefix_hit_gives_same_tokens_and_reports_whole_blocks():
    eng = make_engine()
    p = prompts(1, 30, 31)[0]
    cold = eng.generate([p], GREEDY)[0]
    assert cold.num_cached_prompt_tokens == 0
    warm = eng.generate([p], GREEDY)[0]
    assert warm.num_cached_prompt_tokens == 24  # 30 tokens, 8-token blocks: 3 full blocks
    assert warm.output_ids == cold.output_ids
    other = eng.generate([p], GREEDY, namespace="other-account")[0]
    assert other.num_cached_prompt_tokens == 0


def test_cancellation_frees_every_block():
    eng = make_engine()
    for i, p in enumerate(prompts(4, 20, 30)):
        eng.add_request(f"r{i}", p, SamplingParams(max_tokens=100, ignore_eos=True))
    for _ in range(3):
        eng.step()
    assert eng.block_manager.num_free_blocks < 64
    for i in range(4):
        assert eng.abort(f"r{i}").finish_reason == "abort"
    assert eng.block_manager.num_free_blocks == 64 and not eng.has_work()
    assert all(b.ref_count == 0 for b in eng.block_manager.blocks)


def test_seeded_sampling_is_reproducible_in_any_batch():
    p = prompts(1)[0]
    params = SamplingParams(temperature=0.9, top_p=0.9, seed=1234, max_tokens=10, ignore_eos=True)
    alone = make_engine().generate([p], params)[0].output_ids
    mixed = make_engine().generate(prompts(3, seed=5) + [p], [GREEDY] * 3 + [params])[3].output_ids
    assert alone == mixed


def test_stop_token_and_max_tokens_finish_reasons():
    eng = make_engine()
    p = prompts(1)[0]
    first = eng.generate([p], GREEDY)[0].output_ids
    s = eng.generate([p], SamplingParams(temperature=0, max_tokens=12, stop_token_ids=(first[2],)))[0]
    assert s.finish_reason == "stop" and s.output_ids == first[:3]
    s = eng.generate([p], SamplingParams(temperature=0, max_tokens=5, ignore_eos=True))[0]
    assert s.finish_reason == "length" and len(s.output_ids) == 5


def test_disk_tier_round_trip_and_restart(tmp_path):
    p = prompts(1, 40, 41)[0]
    d = str(tmp_path / "disk")
    eng = make_engine(num_cache_blocks=8, disk_cache_dir=d)
    cold = eng.generate([p], GREEDY)[0]
    # Fill the device cache with other prompts so p's blocks are evicted to disk.
    eng.generate(prompts(2, 40, 41, seed=9), GREEDY)
    assert eng.block_manager.stats.spilled_blocks > 0
    warm = eng.generate([p], GREEDY)[0]
    assert warm.num_cached_prompt_tokens == 32 and warm.output_ids == cold.output_ids
    assert eng.block_manager.stats.disk_hit_blocks > 0
    eng.shutdown()
    restarted = make_engine(num_cache_blocks=8, disk_cache_dir=d)
    again = restarted.generate([p], GREEDY)[0]
    assert again.num_cached_prompt_tokens == 32 and again.output_ids == cold.output_ids
    assert restarted.generate([p], GREEDY, namespace="b")[0].num_cached_prompt_tokens == 0


def test_disk_tier_is_bounded(tmp_path):
    d = tmp_path / "disk"
    eng = make_engine(num_cache_blocks=8, disk_cache_dir=str(d), disk_cache_max_bytes=6000)
    eng.generate(prompts(6, 40, 41), GREEDY)
    eng.disk.flush()
    assert eng.disk.writes > 0 and eng.disk.total_bytes <= 6000
    assert sum(f.stat().st_size for f in d.iterdir()) <= 6000


def test_presence_penalty_counts_live_on_the_device_for_the_request_only():
    eng = make_engine()
    p = prompts(1)[0]
    repeat = SamplingParams(temperature=0, max_tokens=30, ignore_eos=True)
    plain = eng.generate([p], repeat)[0].output_ids
    assert len(set(plain)) < len(plain)  # greedy on the fake model repeats itself
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
