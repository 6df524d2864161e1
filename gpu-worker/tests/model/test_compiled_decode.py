"""The compiled small-decode step (compiled_decode.py, decode_kernel.cpp) computes what the torch-op small
path computes, writes the same cache entries, gives each sequence the same result whatever its batch and
thread count, and falls back to torch ops when it cannot be built."""

import logging
import os

import pytest
import torch

from gpu_worker.model import compiled_decode, decode_threads, native, small_decode
from gpu_worker.model.attention_metadata import AttentionMetadata
from gpu_worker.model.checkpoint_writer import random_weights, write_checkpoint
from gpu_worker.model.config import ModelConfig
from gpu_worker.model.loader import load_model
from gpu_worker.model.small_decode import SmallDecode

from decoding import BLOCK, decode_hidden, greedy_decode, prefilled
from tiny import CONFIGS, hf_config, rel_err, write_tiny

if os.environ.get("GPU_WORKER_COMPILED_DECODE") == "0":
    pytest.skip("compiled decode disabled by GPU_WORKER_COMPILED_DECODE=0", allow_module_level=True)

# Sizes off the kernel's 8-float vectors: 12 heads (one block of 8 + 4 heads on the scalar path),
# hidden 36, latent rank 20 (16 + 4 columns), rope 6, expert rows 24, routed experts in 3 groups.
ODD = hf_config(hidden_size=36, num_attention_heads=12, num_key_value_heads=12, kv_lora_rank=20,
                qk_rope_head_dim=6, qk_nope_head_dim=6, v_head_dim=10, moe_intermediate_size=12,
                intermediate_size=20, n_routed_experts=9, n_group=3, topk_group=2, num_experts_per_tok=3,
                q_lora_rank=20)
# contexts 1..15 (prompt minus one); 16 and 32 sequences run in chunks on several threads where there are
# several (decode_threads.py), with tiles of 1-4 tokens per expert
LENGTHS = {1: (9,), 3: (5, 12, 9), 8: (13, 2, 7, 16, 3, 5, 9, 11),
           16: (13, 2, 7, 16, 3, 5, 9, 11, 4, 15, 6, 8, 2, 12, 10, 14),
           32: tuple((7 * i) % 15 + 2 for i in range(32))}


@pytest.fixture(autouse=True)
def kernel():
    lib = compiled_decode.library()
    assert lib is not None, "the decode kernel did not build: see the log's 'small decode' line"
    return lib


def write_odd(path, seed, dtype=torch.float32):
    write_checkpoint(path, ODD, random_weights(ModelConfig.from_hf_dict(ODD), seed), dtype=dtype)
    return path


def run(model, monkeypatch, lengths, compiled: bool, seed=0, blocks=4):
    """(hidden [B, dim], cache) after one decode step on the compiled kernel or the torch-op small path."""
    with monkeypatch.context() as patch:
        if compiled:  # the torch-op path must not run at all
            patch.setattr(SmallDecode, "_forward", lambda *a: pytest.fail("torch-op small path ran"))
        else:
            patch.setattr(small_decode, "COMPILED_TOKENS", 0)
        seqs, tables, cache = prefilled(model, lengths, seed, blocks)
        hidden, _ = decode_hidden(model, seqs, tables, cache)
    return hidden, cache


def assert_same_step(model, monkeypatch, lengths):
    compiled, compiled_cache = run(model, monkeypatch, lengths, compiled=True)
    ops, ops_cache = run(model, monkeypatch, lengths, compiled=False)
    with monkeypatch.context() as patch:  # the module path, as the small path's own tests compare
        patch.setattr(small_decode, "SMALL_DECODE_TOKENS", 0)
        modules, _ = run(model, monkeypatch, lengths, compiled=False)
    assert rel_err(compiled, ops) <= 1e-5
    assert rel_err(compiled, modules) <= 1e-5
    assert rel_err(model.compute_logits(compiled), model.compute_logits(ops)) <= 1e-5
    # every layer's entry of every new token (prompt entries are the same prefill's)
    assert rel_err(compiled_cache, ops_cache) <= 1e-5
    assert not torch.equal(compiled_cache, torch.zeros_like(compiled_cache))


@pytest.mark.parametrize("batch", sorted(LENGTHS))
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_float32_compiled_equals_torch_ops(tmp_path, monkeypatch, name, batch):
    model = load_model(write_tiny(tmp_path, name, seed=7), dtype=torch.float32)
    assert_same_step(model, monkeypatch, LENGTHS[batch])


@pytest.mark.parametrize("batch", sorted(LENGTHS))
def test_float32_odd_sizes(tmp_path, monkeypatch, batch):
    model = load_model(write_odd(tmp_path, seed=3), dtype=torch.float32)
    assert_same_step(model, monkeypatch, LENGTHS[batch])


@pytest.mark.parametrize("lengths", [(40,), (70, 3, 33), tuple(3 + (37 * i) % 78 for i in range(32))])
def test_float32_embedded_model(embedded_checkpoint_dir, monkeypatch, lengths):
    # 8 heads, rank 32, hidden 64: the vector blocks without tails; contexts over several 4-token blocks
    model = load_model(embedded_checkpoint_dir, dtype=torch.float32)
    compiled, compiled_cache = run(model, monkeypatch, lengths, compiled=True, blocks=20)
    ops, ops_cache = run(model, monkeypatch, lengths, compiled=False, blocks=20)
    assert rel_err(compiled, ops) <= 1e-5
    assert rel_err(compiled_cache, ops_cache) <= 1e-5


def torch_ops(patch, batch: int):
    """The torch-op small path for steps of `batch` sequences, its experts in float32 as the kernel's."""
    patch.setattr(small_decode, "COMPILED_TOKENS", 0)
    # from ALL_EXPERTS_TOKENS tokens the torch-op path runs the experts as bf16 products; the kernel (like
    # the torch-op path below that) keeps them float32: compare like with like
    patch.setattr(small_decode, "ALL_EXPERTS_TOKENS", batch + 1)


def greedy_tokens(model, monkeypatch, lengths, compiled: bool, steps=32):
    with monkeypatch.context() as patch:
        if not compiled:
            torch_ops(patch, len(lengths))
        seqs, tables, cache = prefilled(model, lengths, seed=1, blocks=16)
        return greedy_decode(model, seqs, tables, cache, steps)


@pytest.mark.parametrize("batch", sorted(LENGTHS))
@pytest.mark.parametrize("name", [*sorted(CONFIGS), "odd"])
def test_bfloat16_greedy_tokens_equal_torch_ops(tmp_path, monkeypatch, name, batch):
    if name == "odd":
        path = write_odd(tmp_path, seed=5, dtype=torch.bfloat16)
    else:
        path = write_tiny(tmp_path, name, seed=5, dtype=torch.bfloat16)
    model = load_model(path, dtype=torch.bfloat16)
    compiled = greedy_tokens(model, monkeypatch, LENGTHS[batch], compiled=True)
    assert torch.equal(compiled, greedy_tokens(model, monkeypatch, LENGTHS[batch], compiled=False))


@pytest.mark.parametrize("lengths", [(20,), (9, 30, 14, 3), tuple(3 + (11 * i) % 28 for i in range(32))])
def test_bfloat16_embedded_greedy_tokens_equal_torch_ops_but_near_ties(embedded_checkpoint_dir, monkeypatch,
                                                                       lengths):
    """The real vocabulary (129280 bf16 logits of a random model) has near ties: a hidden state one bf16
    step apart (the two paths' float32 sums round differently) moves a logit by one bf16 step and can
    swap the top two (seen: 4.15625 vs 4.125 at step 29 of the 4-sequence case). So the two paths decode
    in lockstep on the compiled path's tokens, and every token must equal the torch-op path's, or be
    within one bf16 step of its best logit.

    Each step starts both paths from the compiled path's cache: a cache entry one bf16 step apart (seen
    from step 2 on) sends the attention a little elsewhere and, with 32 sequences, some step's expert
    choice with it (seen: biased scores 5e-5 apart in one of 32 sequences in one step), and from there
    that sequence's cache and tokens go their own ways. A step from the same cache writes entries within a
    bf16 step of each other."""
    model = load_model(embedded_checkpoint_dir, dtype=torch.bfloat16)
    seqs, tables, cache = prefilled(model, lengths, seed=1, blocks=16)
    ops_cache = torch.empty_like(cache)
    tokens, done, ties = torch.stack([s[-1] for s in seqs]), [len(s) - 1 for s in seqs], 0
    for _ in range(32):
        meta = AttentionMetadata.build([(t, n, 1) for t, n in zip(tables, done)], block_size=4)
        ops_cache.copy_(cache)
        ours = model.compute_logits(model(tokens, torch.tensor(done), meta, cache)).argmax(-1)
        with monkeypatch.context() as patch:
            torch_ops(patch, len(lengths))
            ops = model.compute_logits(model(tokens, torch.tensor(done), meta, ops_cache))
        best = ops.max(-1).values
        gap = best - ops.gather(1, ours[:, None])[:, 0]
        assert (gap <= best.abs() * 2.0 ** -7).all()  # one bf16 step at most
        ties += int((ours != ops.argmax(-1)).sum())
        new = cache.view(cache.shape[0], -1, cache.shape[-1])[:, meta.slot_mapping].float()
        ops_new = ops_cache.view(cache.shape[0], -1, cache.shape[-1])[:, meta.slot_mapping].float()
        # a bf16 step of the entry's largest element: an entry rounded a step apart in one layer, read
        # back by that layer's attention, moves the next layers' small elements by more than their own step
        assert ((new - ops_new).abs() <= ops_new.abs().amax(-1, keepdim=True) * 2.0 ** -7).all()
        tokens, done = ours, [n + 1 for n in done]
    assert ties <= 2


def threads(patch, count: int):
    """Every compiled step asks for `count` threads (decode_threads.ThreadChoice's choice overridden)."""
    patch.setattr(decode_threads.ThreadChoice, "threads", lambda self, batch: count)


def threads_used(model) -> int:
    return model.small_decode.compiled().timing[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_sequence_gets_the_same_result_in_any_batch_on_any_threads(tmp_path, monkeypatch, dtype):
    """Bit for bit: every sum of a token runs in one order whoever shares its product tiles (1-4 tokens,
    vector lanes or the scalar tail of odd sizes), its chunk or its thread; its experts add up in index
    order."""
    model = load_model(write_odd(tmp_path, seed=3, dtype=dtype), dtype=dtype)
    lengths = LENGTHS[32]
    runs = []
    for count in (1, 2):
        with monkeypatch.context() as patch:
            threads(patch, count)
            runs.append(run(model, monkeypatch, lengths, compiled=True))
            if compiled_decode.library().decode_kernel_threaded():
                assert threads_used(model) == count
    (one, one_cache), (two, two_cache) = runs
    assert torch.equal(one, two) and torch.equal(one_cache, two_cache)

    monkeypatch.setattr(SmallDecode, "_forward", lambda *a: pytest.fail("torch-op small path ran"))
    seqs, tables, cache = prefilled(model, lengths, 0)
    for b in range(len(lengths)):  # each sequence alone, in turn
        alone, _ = decode_hidden(model, seqs[b : b + 1], tables[b : b + 1], cache)
        assert torch.equal(alone[0], one[b]), b
    assert torch.equal(cache, one_cache)


def test_a_step_reading_another_sequences_new_entry_runs_as_one_chunk(tmp_path, monkeypatch):
    """Not a step the engine makes (a sequence writes its own next slot; shared prefix blocks are full),
    but one with a defined result: every new entry is written before any is read, as torch does. Chunks
    run apart would race, so the kernel runs such a step as one chunk."""
    model = load_model(write_tiny(tmp_path, seed=2), dtype=torch.float32)
    lengths = LENGTHS[16]
    seqs, tables, cache = prefilled(model, lengths, 0)
    # sequence 15 (in the other chunk of 8) reads sequence 0's last block, where sequence 0's new token goes
    assert (lengths[0] - 1) // BLOCK == len(tables[0]) - 1 and lengths[15] > BLOCK
    tables[15] = [tables[0][-1], *tables[15][1:]]
    results = []
    for compiled in (True, False):
        step_cache = cache.clone()
        with monkeypatch.context() as patch:
            if compiled:
                threads(patch, 2)
                patch.setattr(SmallDecode, "_forward", lambda *a: pytest.fail("torch-op small path ran"))
            else:
                patch.setattr(small_decode, "COMPILED_TOKENS", 0)
            results.append((decode_hidden(model, seqs, tables, step_cache)[0], step_cache))
    assert threads_used(model) == 1
    (compiled, compiled_cache), (ops, ops_cache) = results
    assert rel_err(compiled, ops) <= 1e-5 and rel_err(compiled_cache, ops_cache) <= 1e-5


def test_mixed_cache_dtype(tmp_path, monkeypatch):
    # a float32 model over a bf16 cache: entries rounded when written, widened when read, as torch's
    model = load_model(write_tiny(tmp_path, seed=2), dtype=torch.float32)
    monkeypatch.setattr(model, "allocate_kv_cache", lambda n, b: torch.zeros(
        model.config.num_hidden_layers, n, b, model.config.kv_cache_dim, dtype=torch.bfloat16))
    compiled, compiled_cache = run(model, monkeypatch, LENGTHS[3], compiled=True)
    ops, ops_cache = run(model, monkeypatch, LENGTHS[3], compiled=False)
    assert rel_err(compiled, ops) <= 1e-2
    assert (compiled_cache.float() - ops_cache.float()).abs().max() <= 2 * 2.0 ** -8 * ops_cache.float().abs().max()


def test_out_of_range_position_raises(tmp_path, monkeypatch):
    model = load_model(write_tiny(tmp_path, seed=2), dtype=torch.float32)
    seqs, tables, cache = prefilled(model, (5,), 0)
    meta = AttentionMetadata.build([(tables[0], 4, 1)], block_size=4)
    with pytest.raises(IndexError, match="position"):
        model(seqs[0][-1:], torch.tensor([model.config.max_position_embeddings]), meta, cache)


def test_without_the_kernel_small_decode_takes_torch_ops(tmp_path, monkeypatch):
    monkeypatch.setattr(compiled_decode, "library", lambda: None)
    model = load_model(write_tiny(tmp_path, seed=2), dtype=torch.float32)
    assert model.small_decode.compiled() is None
    hidden, _ = run(model, monkeypatch, LENGTHS[3], compiled=False)
    monkeypatch.setattr(small_decode, "SMALL_DECODE_TOKENS", 0)
    modules, _ = run(model, monkeypatch, LENGTHS[3], compiled=False)
    assert rel_err(hidden, modules) <= 1e-5


def test_missing_compiler_or_switch_falls_back_with_one_log_line(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("GPU_WORKER_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    with caplog.at_level(logging.INFO, logger="gpu_worker.model"):
        assert compiled_decode._load() is None
        monkeypatch.setenv("GPU_WORKER_COMPILED_DECODE", "0")
        assert compiled_decode._load() is None
    messages = [r.getMessage() for r in caplog.records]
    assert "torch ops (compiled kernel unavailable" in messages[0] and "no-such-compiler" in messages[0]
    assert "GPU_WORKER_COMPILED_DECODE=0" in messages[1]


def test_kernel_is_built_once_per_source_and_flags(tmp_path):
    first = native.build(compiled_decode.SOURCE, tmp_path)
    built = first.stat().st_mtime_ns
    assert native.build(compiled_decode.SOURCE, tmp_path) == first and first.stat().st_mtime_ns == built
    edited = tmp_path / "src" / compiled_decode.SOURCE.name
    edited.parent.mkdir()
    edited.write_text(compiled_decode.SOURCE.read_text() + "\n// edited\n")
    assert native.build(edited, tmp_path) != first
    assert sorted(p.name for p in tmp_path.glob("*.so")) == sorted([first.name, native.build(edited, tmp_path).name])


def test_portable_build_computes_the_same(tmp_path, monkeypatch):
    # a CPU without AVX2 gets a build without -mavx2 -mfma: the vector code on two SSE registers, the
    # bf16 widening in plain C++
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")
    assert "-mavx2" not in native.compiler_flags()
    monkeypatch.setenv("GPU_WORKER_KERNEL_CACHE", str(tmp_path / "kernels"))
    portable = compiled_decode._load()
    assert portable is not None
    monkeypatch.setattr(compiled_decode, "library", lambda: portable)
    model = load_model(write_odd(tmp_path, seed=3), dtype=torch.float32)
    assert_same_step(model, monkeypatch, LENGTHS[3])
    model = load_model(write_tiny(tmp_path / "bf16", seed=5, dtype=torch.bfloat16), dtype=torch.bfloat16)
    compiled = greedy_tokens(model, monkeypatch, LENGTHS[3], compiled=True)
    assert torch.equal(compiled, greedy_tokens(model, monkeypatch, LENGTHS[3], compiled=False))
