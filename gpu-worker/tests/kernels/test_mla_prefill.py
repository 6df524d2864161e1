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
    rand = lambda *shape: (torch.randn(*shape, generator=g) * 0.5).to(dtype)  # noqa: E731
    tensors = (rand(queries, heads, nope), rand(queries, heads, rope), rand(keys, heads, nope),
               rand(keys, rope), rand(keys, heads, v_dim))
    cu = lambda xs: torch.tensor([0, *accumulate(xs)], dtype=torch.int32)  # noqa: E731
    return tensors, PrefillPart(cu(q_lens), cu(k_lens), torch.empty(0), q_lens, k_lens)


def kernel(tensors, meta, scale, **blocks):
    return mla_prefill(*tensors, meta.cu_query_lens, meta.cu_context_lens, meta.max_query_len,
                       scale, **blocks)


def random_case(seed):
    g = torch.Generator().manual_seed(200 + seed)
    pick = lambda lo, hi: int(torch.randint(lo, hi + 1, (), generator=g))  # noqa: E731
    news = [pick(1, 80) for _ in range(pick(1, 4))]
    lens = [(new, new + pick(0, 70)) for new in news]
    return lens, pick(1, 4), pick(2, 20), pick(2, 10), pick(2, 20), {}


# a one-token prompt, fresh prompts, chunks over prefixes crossing the 64-token tile edges, one
# token over a long prefix (default and 16-wide tiles); widths no power of two; random shapes
RAGGED = [(1, 1), (5, 5), (3, 70), (17, 81), (64, 64), (65, 130), (1, 63)]
CASES = [(RAGGED, 3, 8, 4, 8, {}), (RAGGED, 3, 8, 4, 8, {"block_m": 16, "block_n": 16}),
         ([(7, 7), (2, 40)], 2, 24, 6, 20, {})] + [random_case(seed) for seed in range(3)]


@pytest.mark.parametrize("shape", CASES)
def test_prefill_equals_the_reference(shape):
    lens, heads, nope, rope, v_dim, blocks = shape
    tensors, meta = case(lens, heads, nope, rope, v_dim, seed=len(lens))
    out = kernel(tensors, meta, 0.3, **blocks)
    assert out.shape == (sum(q for q, _ in lens), heads, v_dim)
    expected = TorchAttention().prefill(*tensors, meta, 0.3)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_bfloat16_accumulates_in_float32():
    tensors, meta = case([(9, 9), (20, 50)], heads=2, nope=16, rope=16, v_dim=16,
                         dtype=torch.bfloat16, seed=2)
    out = kernel(tensors, meta, 0.25)
    assert out.dtype == torch.bfloat16
    wide = TorchAttention().prefill(*(t.float() for t in tensors), meta, 0.25)
    torch.testing.assert_close(out.float(), wide, rtol=2e-2, atol=2e-2)
