"""Sharded forwards on 2 and 4 gloo ranks equal the single-process forward (float32 logits within
1e-5)."""
import os
from dataclasses import replace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gpu_worker.model import fp8
from gpu_worker.model.attention_metadata import AttentionMetadata
from gpu_worker.model.make_checkpoint import random_weights, write_checkpoint
from gpu_worker.model.config import ModelConfig
from gpu_worker.model.loader import dequantize_part, load_model
from gpu_worker.parallel.process_group import free_port, init_rank
from gpu_worker.parallel.state import current, using
from tests.model.tiny import hf_config, rel_err

TOLERANCE = 1e-5
BLOCK = 4
# 4 heads, intermediate 48, 8 experts of width 16: all divide by 2 and 4; vocab 101 does not (padded shard)
CONFIG = hf_config("qlora_yarn_4groups_1dense", num_hidden_layers=3)
SEQS = torch.randint(0, 101, (2, 9), generator=torch.Generator().manual_seed(1))


def _rank_entry(rank, size, port, fn, args, out_dir):
    torch.set_num_threads(1)
    init_rank(rank, size, port, timeout_s=60)
    torch.save(fn(*args), f"{out_dir}/rank{rank}.pt")
    dist.barrier()
    # Leave without tearing the process group down: a rank whose peers already exited can abort
    # (SIGABRT) in gloo's teardown, failing a run whose results are all written.
    os._exit(0)


def run_ranks(size: int, out_dir, fn, *args) -> list:
    """What fn(*args) returns on each of `size` gloo ranks (CPU processes), as the worker runs."""
    mp.spawn(_rank_entry, args=(size, free_port(), fn, args, str(out_dir)), nprocs=size, join=True)
    return [torch.load(f"{out_dir}/rank{r}.pt") for r in range(size)]


def logits_of(checkpoint) -> dict:
    """The cacheless forward of two sequences, and the paged path: two prefills then three decode steps."""
    model = load_model(checkpoint, dtype=torch.float32)
    seqs = SEQS
    cache = model.allocate_kv_cache(8, BLOCK)
    tables = [[3, 0, 5, 1], [2, 7, 4, 6]]

    def step(parts):
        meta = AttentionMetadata.build([(tables[i], cached, len(ids)) for i, ids, cached in parts], BLOCK)
        ids = torch.cat([ids for _, ids, _ in parts])
        positions = torch.cat([torch.arange(cached, cached + len(ids)) for _, ids, cached in parts])
        return model.compute_logits(model(ids, positions, meta, cache))

    paged = [step([(0, seqs[0, :6], 0), (1, seqs[1, :4], 0)])]
    for i in range(3):
        paged.append(step([(0, seqs[0, 6 + i : 7 + i], 6 + i), (1, seqs[1, 4 + i : 5 + i], 4 + i)]))
    return {"dense": model.forward_dense(seqs), "paged": torch.cat(paged),
            "params": sum(p.numel() for p in model.parameters()), "local_experts": model.layers[1].mlp.experts.num_experts}


def both_ways(fn, *args) -> dict:
    """{expert_parallel: fn(*args)}: tensor parallelism alone, and with expert parallelism."""
    out = {}
    for expert_parallel in (False, True):
        with using(replace(current(), expert_parallel=expert_parallel)):
            out[expert_parallel] = fn(*args)
    return out


def every_checkpoint(checkpoints: dict) -> dict:
    return {kind: logits_of(path) for kind, path in checkpoints.items()}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    weights = random_weights(ModelConfig.from_hf_dict(CONFIG), seed=3)
    plain = write_checkpoint(tmp_path_factory.mktemp("f32"), CONFIG, weights, dtype=torch.float32, max_shard_bytes=40_000)
    quantized = write_checkpoint(tmp_path_factory.mktemp("fp8"), CONFIG, weights, dtype=torch.float32, quantize_fp8=True)
    return {"float32": plain, "fp8": quantized}


@pytest.fixture(scope="module")
def reference(checkpoints):
    return every_checkpoint(checkpoints)


@pytest.fixture(scope="module")
def transformers_logits(checkpoints):
    from transformers import DeepseekV3ForCausalLM as HFDeepseekV3

    model = HFDeepseekV3.from_pretrained(checkpoints["float32"], dtype=torch.float32).eval()
    with torch.no_grad():
        return model(SEQS).logits


@pytest.mark.parametrize("size", [2, 4])
def test_sharded_forward_equals_single_process(checkpoints, reference, transformers_logits, tmp_path, size):
    results = run_ranks(size, tmp_path, both_ways, every_checkpoint, checkpoints)
    for expert_parallel in (False, True):  # and transformers' greedy tokens for the float32 checkpoint
        sharded = results[0][expert_parallel]["float32"]["dense"]
        assert rel_err(sharded, transformers_logits) <= 1e-4
        assert torch.equal(sharded.argmax(-1), transformers_logits.argmax(-1))
    for rank, both in enumerate(results):  # every rank ends a step with the whole logits
        for expert_parallel, by_kind in both.items():
            for kind, got in by_kind.items():
                expected, case = reference[kind], (rank, kind, expert_parallel)
                assert rel_err(got["dense"], expected["dense"]) <= TOLERANCE, case
                assert rel_err(got["paged"], expected["paged"]) <= TOLERANCE, case
                assert got["params"] < expected["params"], case  # each rank holds a part
                assert got["local_experts"] == (8 // size if expert_parallel else 8), case


# Every split falls on a 128 boundary, as DeepSeek-V3's do at 8 ranks: 2 heads of q rows 2 x (64 + 64),
# kv_b rows 2 x (64 + 64), o_proj columns 2 x 64; dense and expert widths 256 = 2 x 128.
ALIGNED = hf_config("qlora_yarn_4groups_1dense", hidden_size=128, num_attention_heads=4, num_key_value_heads=4,
                    qk_nope_head_dim=64, qk_rope_head_dim=64, v_head_dim=64, kv_lora_rank=64, q_lora_rank=128,
                    intermediate_size=512, moe_intermediate_size=256, n_routed_experts=4, n_group=2,
                    topk_group=1, num_experts_per_tok=2, num_hidden_layers=2)


def fp8_kept_logits(checkpoint) -> dict:
    model = load_model(checkpoint, dtype=torch.float32, kernel_backend="torch", keep_fp8=True)
    seqs = torch.randint(0, 101, (1, 7), generator=torch.Generator().manual_seed(2))
    e4m3 = sum(p.numel() for p in model.parameters() if p.dtype == fp8.FP8_DTYPE)
    return {"logits": model.forward_dense(seqs), "e4m3": e4m3}


def test_fp8_checkpoint_loads_sharded_and_stays_fp8(tmp_path):
    """Each rank keeps its part of the e4m3 weights (which part, with exactly which scale blocks:
    tests/model/test_loader.py) and computes what one process does."""
    weights = random_weights(ModelConfig.from_hf_dict(ALIGNED), seed=4)
    checkpoint = write_checkpoint(tmp_path / "ckpt", ALIGNED, weights, dtype=torch.float32, quantize_fp8=True)
    expected = fp8_kept_logits(checkpoint)
    results = run_ranks(2, tmp_path, both_ways, fp8_kept_logits, checkpoint)
    for rank, both in enumerate(results):
        for expert_parallel, got in both.items():
            assert rel_err(got["logits"], expected["logits"]) <= TOLERANCE, (rank, expert_parallel)
            assert 0 < got["e4m3"] < expected["e4m3"], (rank, expert_parallel)


def test_an_fp8_part_is_dequantized_from_its_own_scale_blocks():
    weight = torch.randn(300, 260, generator=torch.Generator().manual_seed(0))
    q, scale = fp8.quantize(weight)
    full = fp8.dequantize(q, scale)
    for rows, cols in [(slice(100, 250), slice(130, 260)), (slice(0, 300), slice(5, 7)), (slice(256, 300), slice(None))]:
        part = dequantize_part(q[rows, cols], scale, tuple(q.shape), (rows, cols), (128, 128))
        assert torch.equal(part, full[rows, cols])
