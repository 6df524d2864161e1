"""Sharded forwards on 2 and 4 gloo ranks equal the single-process forward (float32 logits within 1e-5)."""
from dataclasses import replace

import pytest
import torch

from gpu_worker.model import fp8
from gpu_worker.model.attention_metadata import AttentionMetadata
from gpu_worker.model.checkpoint_writer import random_weights, write_checkpoint
from gpu_worker.model.config import ModelConfig
from gpu_worker.model.loader import dequantize_part, load_model
from gpu_worker.parallel.state import current, using

from ranks import run_ranks
from tests.model.tiny import hf_config, rel_err

TOLERANCE = 1e-5
BLOCK = 4
# 4 heads, intermediate 48, 8 experts of width 16: all divide by 2 and 4; vocab 101 does not (padded shard)
CONFIG = hf_config("qlora_yarn_4groups_1dense", num_hidden_layers=3)


def logits_of(checkpoint) -> dict:
    """The cacheless forward of two sequences, and the paged path: two prefills then three decode steps."""
    model = load_model(checkpoint, dtype=torch.float32)
    seqs = torch.randint(0, 101, (2, 9), generator=torch.Generator().manual_seed(1))
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


def every_variant(checkpoints: dict) -> dict:
    """On one set of ranks: tensor parallel alone and with expert parallelism, float32 and FP8 checkpoints."""
    out = {}
    for expert_parallel in (False, True):
        with using(replace(current(), expert_parallel=expert_parallel)):
            for kind, path in checkpoints.items():
                out[kind, expert_parallel] = logits_of(path)
    return out


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    weights = random_weights(ModelConfig.from_hf_dict(CONFIG), seed=3)
    plain = write_checkpoint(tmp_path_factory.mktemp("f32"), CONFIG, weights, dtype=torch.float32, max_shard_bytes=40_000)
    quantized = write_checkpoint(tmp_path_factory.mktemp("fp8"), CONFIG, weights, dtype=torch.float32, quantize_fp8=True)
    return {"float32": plain, "fp8": quantized}


@pytest.fixture(scope="module")
def reference(checkpoints):
    return {kind: logits_of(path) for kind, path in checkpoints.items()}


@pytest.mark.parametrize("size", [2, 4])
def test_sharded_forward_equals_single_process(checkpoints, reference, tmp_path, size):
    results = run_ranks(size, tmp_path, every_variant, checkpoints)
    for rank, variants in enumerate(results):  # every rank ends a step with the whole logits
        for (kind, expert_parallel), got in variants.items():
            expected, case = reference[kind], (rank, kind, expert_parallel)
            assert rel_err(got["dense"], expected["dense"]) <= TOLERANCE, case
            assert rel_err(got["paged"], expected["paged"]) <= TOLERANCE, case
            assert got["params"] < expected["params"], case  # each rank holds a part of the weights
            assert got["local_experts"] == (8 // size if expert_parallel else 8), case


def test_an_fp8_part_is_dequantized_from_its_own_scale_blocks():
    weight = torch.randn(300, 260, generator=torch.Generator().manual_seed(0))
    q, scale = fp8.quantize(weight)
    full = fp8.dequantize(q, scale)
    for rows, cols in [(slice(100, 250), slice(130, 260)), (slice(0, 300), slice(5, 7)), (slice(256, 300), slice(None))]:
        part = dequantize_part(q[rows, cols], scale, tuple(q.shape), (rows, cols), (128, 128))
        assert torch.equal(part, full[rows, cols])
