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
    width = max(max(per_seq), 1)
    tables = torch.full((len(context_lens), width), num_blocks - 1)
    for b, n in enumerate(per_seq):
        tables[b, :n] = torch.tensor(order[:n])
        order = order[n:]
    cache = torch.randn(num_blocks, page, latent + rope, generator=g).to(dtype)
    query = (torch.randn(len(context_lens), heads, latent + rope, generator=g) * 0.3).to(dtype)
    meta = DecodePart(tables, torch.tensor(context_lens), max(max(context_lens), 1), splits, page)
    return query, cache, meta


def run_both(query, cache, meta, latent):
    kernel = mla_decode(query, cache, meta.block_tables, meta.context_lens, latent, meta.num_splits)
    reference = TorchAttention().decode(query, cache, meta, latent)
    return kernel, reference


@pytest.mark.parametrize("splits", [1, 3])
def test_ragged_contexts_across_block_boundaries(splits):
    query, cache, meta = case([63, 64, 65, 1, 130], heads=4, latent=16, rope=4, page=64, splits=splits)
    kernel, reference = run_both(query, cache, meta, 16)
    assert kernel.shape == (5, 4, 16) and kernel.dtype == torch.float32
    torch.testing.assert_close(kernel, reference, rtol=1e-5, atol=1e-5)


def test_awkward_head_and_latent_widths_small_pages_many_splits():
    # 20 heads: two head blocks, the second partly masked; latent 24 and rope 6 pad to 32 and 16 lanes;
    # 7 splits of a 9-token context leave some splits empty
    query, cache, meta = case([9, 40, 2], heads=20, latent=24, rope=6, page=4, splits=7, seed=1)
    kernel, reference = run_both(query, cache, meta, 24)
    torch.testing.assert_close(kernel, reference, rtol=1e-5, atol=1e-5)


def test_a_row_without_context_gives_zeros_not_nan():
    # CUDA-graph padding rows may carry a context length of 0
    query, cache, meta = case([5, 0], heads=2, latent=16, rope=4, page=4, splits=2, seed=2)
    kernel = mla_decode(query, cache, meta.block_tables, meta.context_lens, 16, meta.num_splits)
    assert torch.equal(kernel[1], torch.zeros(2, 16))
    reference = TorchAttention().decode(query[:1], cache, DecodePart(meta.block_tables[:1], meta.context_lens[:1], 5, 2, 4), 16)
    torch.testing.assert_close(kernel[:1], reference, rtol=1e-5, atol=1e-5)


def test_bfloat16_cache_and_query_accumulate_in_float32():
    query, cache, meta = case([33, 70], heads=3, latent=32, rope=16, page=16, splits=2, dtype=torch.bfloat16, seed=3)
    kernel, _ = run_both(query, cache, meta, 32)
    assert kernel.dtype == torch.bfloat16
    wide = TorchAttention().decode(query.float(), cache.float(), meta, 32)
    torch.testing.assert_close(kernel.float(), wide, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("seed", range(3))
def test_random_shapes(seed):
    g = torch.Generator().manual_seed(100 + seed)
    pick = lambda lo, hi: int(torch.randint(lo, hi + 1, (), generator=g))
    lens = [pick(1, 150) for _ in range(pick(1, 6))]
    heads, latent, rope = pick(1, 20), pick(4, 40), pick(2, 12)
    page, splits = [4, 16, 64][pick(0, 2)], pick(1, 5)
    query, cache, meta = case(lens, heads=heads, latent=latent, rope=rope, page=page, splits=splits, seed=seed)
    kernel, reference = run_both(query, cache, meta, latent)
    torch.testing.assert_close(kernel, reference, rtol=1e-5, atol=1e-5)
