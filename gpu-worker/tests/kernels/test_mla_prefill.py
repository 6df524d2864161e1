"""The varlen MLA prefill kernel equals the torch reference (attention_backend.TorchAttention.prefill)."""

from itertools import accumulate

import pytest
import torch

from gpu_worker.kernels.mla_prefill import mla_prefill
from gpu_worker.model.attention_backend import TorchAttention
from gpu_worker.model.attention_metadata import PrefillPart


def case(lens, heads, nope, rope, v_dim, dtype=torch.float32, seed=0):
    """lens: (new tokens, whole context) per sequence, packed back to back."""
    g = torch.Generator().manual_seed(seed)
    q_lens, k_lens = [q for q, _ in lens], [k for _, k in lens]
    queries, keys = sum(q_lens), sum(k_lens)
    rand = lambda *shape: (torch.randn(*shape, generator=g) * 0.5).to(dtype)
    tensors = (rand(queries, heads, nope), rand(queries, heads, rope), rand(keys, heads, nope), rand(keys, rope),
               rand(keys, heads, v_dim))
    cu = lambda xs: torch.tensor([0, *accumulate(xs)], dtype=torch.int32)
    meta = PrefillPart(cu(q_lens), cu(k_lens), torch.empty(0), q_lens, k_lens)
    return tensors, meta


def run_kernel(tensors, meta, scale, **blocks):
    return mla_prefill(*tensors, meta.cu_query_lens, meta.cu_context_lens, meta.max_query_len, scale, **blocks)


@pytest.mark.parametrize("blocks", [{}, {"block_m": 16, "block_n": 16}])
def test_ragged_prompts_and_chunks_over_cached_prefixes(blocks):
    # a one-token prompt, fresh prompts, chunks over prefixes crossing the 64-token tile edges, one token
    # over a long prefix
    lens = [(1, 1), (5, 5), (3, 70), (17, 81), (64, 64), (65, 130), (1, 63)]
    tensors, meta = case(lens, heads=3, nope=8, rope=4, v_dim=8)
    kernel = run_kernel(tensors, meta, 0.3, **blocks)
    reference = TorchAttention().prefill(*tensors, meta, 0.3)
    assert kernel.shape == (sum(q for q, _ in lens), 3, 8)
    torch.testing.assert_close(kernel, reference, rtol=1e-5, atol=1e-5)


def test_widths_that_are_not_powers_of_two():
    tensors, meta = case([(7, 7), (2, 40)], heads=2, nope=24, rope=6, v_dim=20, seed=1)
    torch.testing.assert_close(run_kernel(tensors, meta, 0.2), TorchAttention().prefill(*tensors, meta, 0.2),
                               rtol=1e-5, atol=1e-5)


def test_bfloat16_accumulates_in_float32():
    tensors, meta = case([(9, 9), (20, 50)], heads=2, nope=16, rope=16, v_dim=16, dtype=torch.bfloat16, seed=2)
    kernel = run_kernel(tensors, meta, 0.25)
    assert kernel.dtype == torch.bfloat16
    wide = TorchAttention().prefill(*(t.float() for t in tensors), meta, 0.25)
    torch.testing.assert_close(kernel.float(), wide, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("seed", range(3))
def test_random_shapes(seed):
    g = torch.Generator().manual_seed(200 + seed)
    pick = lambda lo, hi: int(torch.randint(lo, hi + 1, (), generator=g))
    lens = []
    for _ in range(pick(1, 4)):
        new = pick(1, 80)
        lens.append((new, new + pick(0, 70)))
    tensors, meta = case(lens, heads=pick(1, 4), nope=pick(2, 20), rope=pick(2, 10), v_dim=pick(2, 20), seed=seed)
    torch.testing.assert_close(run_kernel(tensors, meta, 0.3), TorchAttention().prefill(*tensors, meta, 0.3),
                               rtol=1e-5, atol=1e-5)
