"""The paged MLA decode kernel equals the torch reference (attention_backend.TorchAttention.decode)."""

import pytest
import torch

from gpu_worker.kernels.mla_decode import mla_decode
from gpu_worker.model.attention_backend import TorchAttention
from gpu_worker.model.attention_metadata import DecodePart


def case(context_lens, heads, latent, rope, page, splits, dtype=torch.float32, seed=0):
    """Random queries and a cache whose blocks are handed out in a shuffled order."""
    g = torch.Generator().manual_seed(seed)
    per_seq = [-(-n // page) for n in context_lens]
    num_blocks = sum(per_seq) + 2
    order = torch.randperm(num_blocks, generator=g).tolist()
    tables = torch.full((len(context_lens), max(max(per_seq), 1)), num_blocks - 1)
    for b, n in enumerate(per_seq):
        tables[b, :n] = torch.tensor(order[:n])
        order = order[n:]
    cache = torch.randn(num_blocks, page, latent + rope, generator=g).to(dtype)
    query = (torch.randn(len(context_lens), heads, latent + rope, generator=g) * 0.3).to(dtype)
    meta = DecodePart(tables, torch.tensor(context_lens), max(max(context_lens), 1), splits, page)
    return query, cache, meta


def kernel(query, cache, meta, latent):
    return mla_decode(query, cache, meta.block_tables, meta.context_lens, latent, meta.num_splits)


def random_case(seed):
    g = torch.Generator().manual_seed(100 + seed)
    pick = lambda lo, hi: int(torch.randint(lo, hi + 1, (), generator=g))  # noqa: E731
    lens = [pick(1, 150) for _ in range(pick(1, 6))]
    return lens, pick(1, 20), pick(4, 40), pick(2, 12), [4, 16, 64][pick(0, 2)], pick(1, 5)


# (context lens, heads, latent, rope, page, splits): ragged contexts across block boundaries, direct
# and split; 20 heads (a second, partly masked head block), latent 24 and rope 6 (padded lanes), 7
# splits of a 9-token context (some splits empty); random shapes
CASES = [([63, 64, 65, 1, 130], 4, 16, 4, 64, 1), ([63, 64, 65, 1, 130], 4, 16, 4, 64, 3),
         ([9, 40, 2], 20, 24, 6, 4, 7)] + [random_case(seed) for seed in range(3)]


@pytest.mark.parametrize("shape", CASES)
def test_decode_equals_the_reference(shape):
    query, cache, meta = case(*shape, seed=len(shape[0]))
    out = kernel(query, cache, meta, shape[2])
    assert out.shape == query.shape[:2] + (shape[2],) and out.dtype == torch.float32
    torch.testing.assert_close(out, TorchAttention().decode(query, cache, meta, shape[2]),
                               rtol=1e-5, atol=1e-5)


def test_a_row_without_context_gives_zeros_not_nan():
    # CUDA-graph padding rows may carry a context length of 0
    query, cache, meta = case([5, 0], heads=2, latent=16, rope=4, page=4, splits=2, seed=2)
    out = kernel(query, cache, meta, 16)
    assert torch.equal(out[1], torch.zeros(2, 16))
    first = DecodePart(meta.block_tables[:1], meta.context_lens[:1], 5, 2, 4)
    torch.testing.assert_close(out[:1], TorchAttention().decode(query[:1], cache, first, 16),
                               rtol=1e-5, atol=1e-5)


def test_bfloat16_cache_and_query_accumulate_in_float32():
    query, cache, meta = case([33, 70], heads=3, latent=32, rope=16, page=16, splits=2,
                              dtype=torch.bfloat16, seed=3)
    out = kernel(query, cache, meta, 32)
    assert out.dtype == torch.bfloat16
    wide = TorchAttention().decode(query.float(), cache.float(), meta, 32)
    torch.testing.assert_close(out.float(), wide, rtol=2e-2, atol=2e-2)
