"""Paged MLA decode attention, absorbed form: one query token per sequence against its latent
cache, read in place through the block table.

Every head attends to the same entry [latent (R) | rope key (PE)] and the latent is also the value,
so, as in FlashMLA, a program takes BLOCK_H heads of one sequence and streams its entries once.
Long contexts are split over `num_splits` programs (split-K) whose partial outputs and log-sum-exps
a second kernel merges. Each split's range comes from the device-side length, so one launch shape
serves any lengths (what CUDA graph replay needs).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import dot_precision, dot_width, widen_for_interpreter


@triton.jit
def _decode_kernel(
    q_ptr, cache_ptr, tables_ptr, lens_ptr, part_ptr, lse_ptr,
    q_stride_b, q_stride_h, entry_stride, table_stride,
    part_stride_b, part_stride_h, part_stride_s, lse_stride_b, lse_stride_h,
    num_heads, num_splits,
    R: tl.constexpr, PE: tl.constexpr, PAGE: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_PE: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr, WIDEN: tl.constexpr,
):
    seq = tl.program_id(0)
    heads = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    split = tl.program_id(2)
    r = tl.arange(0, BLOCK_R)
    pe = tl.arange(0, BLOCK_PE)
    head_ok = heads < num_heads

    q_rows = q_ptr + seq * q_stride_b + heads[:, None] * q_stride_h
    q_lat = tl.load(q_rows + r[None, :], mask=head_ok[:, None] & (r[None, :] < R), other=0.0)
    q_pe = tl.load(q_rows + R + pe[None, :], mask=head_ok[:, None] & (pe[None, :] < PE), other=0.0)
    if WIDEN:
        q_lat, q_pe = q_lat.to(tl.float32), q_pe.to(tl.float32)

    length = tl.load(lens_ptr + seq)
    per_split = tl.cdiv(tl.cdiv(length, num_splits), BLOCK_N) * BLOCK_N
    start = split * per_split
    end = tl.minimum(start + per_split, length)

    m = tl.full([BLOCK_H], float("-inf"), tl.float32)
    total = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_R], tl.float32)
    for first in range(start, end, BLOCK_N):
        t = first + tl.arange(0, BLOCK_N)
        t_ok = t < end
        block = tl.load(tables_ptr + seq * table_stride + t // PAGE, mask=t_ok, other=0)
        entries = cache_ptr + (block.to(tl.int64) * PAGE + t % PAGE)[:, None] * entry_stride
        k_lat = tl.load(entries + r[None, :], mask=t_ok[:, None] & (r[None, :] < R), other=0.0)
        k_pe = tl.load(entries + R + pe[None, :], mask=t_ok[:, None] & (pe[None, :] < PE), other=0.0)
        p_dtype = k_lat.dtype  # probabilities meet the values in the cache's dtype, as on a GPU
        if WIDEN:
            k_lat, k_pe = k_lat.to(tl.float32), k_pe.to(tl.float32)
        scores = tl.dot(q_lat, tl.trans(k_lat), input_precision=PRECISION)
        scores += tl.dot(q_pe, tl.trans(k_pe), input_precision=PRECISION)
        scores = tl.where(t_ok[None, :], scores * 1.4426950408889634, float("-inf"))  # log2 domain
        m_new = tl.maximum(m, tl.max(scores, axis=1))
        rescale = tl.exp2(m - m_new)
        p = tl.exp2(scores - m_new[:, None])
        total = total * rescale + tl.sum(p, axis=1)
        p = p.to(p_dtype).to(k_lat.dtype)
        acc = acc * rescale[:, None] + tl.dot(p, k_lat, input_precision=PRECISION)
        m = m_new

    # An empty split (its range starts past the context) leaves total == 0: output 0, weight 0 in the merge.
    empty = total == 0.0
    out = acc / tl.where(empty, 1.0, total)[:, None]
    lse = tl.where(empty, float("-inf"), m + tl.log2(tl.where(empty, 1.0, total)))
    part = part_ptr + seq * part_stride_b + heads[:, None] * part_stride_h + split * part_stride_s
    part_mask = head_ok[:, None] & (r[None, :] < R)
    tl.store(part + r[None, :], out.to(part_ptr.dtype.element_ty), mask=part_mask)
    tl.store(lse_ptr + seq * lse_stride_b + heads * lse_stride_h + split, lse, mask=head_ok)


@triton.jit
def _merge_kernel(
    part_ptr, lse_ptr, out_ptr,
    part_stride_b, part_stride_h, part_stride_s, lse_stride_b, lse_stride_h, out_stride_b, out_stride_h,
    num_splits,
    R: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_S: tl.constexpr,
):
    seq = tl.program_id(0)
    head = tl.program_id(1)
    s = tl.arange(0, BLOCK_S)
    r = tl.arange(0, BLOCK_R)
    s_ok = s < num_splits
    lse = tl.load(lse_ptr + seq * lse_stride_b + head * lse_stride_h + s, mask=s_ok, other=float("-inf"))
    m = tl.max(lse, axis=0)
    weight = tl.exp2(lse - tl.where(m == float("-inf"), 0.0, m))  # a row with no context: all weights 0
    total = tl.sum(weight, axis=0)
    parts = part_ptr + seq * part_stride_b + head * part_stride_h + s[:, None] * part_stride_s
    parts = tl.load(parts + r[None, :], mask=s_ok[:, None] & (r[None, :] < R), other=0.0)
    out = tl.sum(parts * weight[:, None], axis=0) / tl.where(total == 0.0, 1.0, total)
    out_ptrs = out_ptr + seq * out_stride_b + head * out_stride_h + r
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=r < R)


def mla_decode(query: torch.Tensor, cache: torch.Tensor, block_tables: torch.Tensor,
               context_lens: torch.Tensor, latent_dim: int, num_splits: int, block_h: int = 16,
               block_n: int = 32) -> torch.Tensor:
    """query [B, H, R + PE] (softmax scale folded in), cache [num_blocks, page, R + PE],
    block_tables [B, W], context_lens [B] -> attention output in latent space [B, H, R], query's dtype."""
    batch, heads, width = query.shape
    if query.stride(-1) != 1 or not cache.is_contiguous():
        raise ValueError("mla_decode needs a contiguous last query dim and a contiguous cache")
    out = query.new_empty(batch, heads, latent_dim)
    direct = num_splits == 1
    part = out[:, :, None] if direct else query.new_empty(batch, heads, num_splits, latent_dim,
                                                           dtype=torch.float32)
    lse = torch.empty(batch, heads, num_splits, dtype=torch.float32, device=query.device)
    _decode_kernel[(batch, triton.cdiv(heads, block_h), num_splits)](
        query, cache, block_tables, context_lens, part, lse,
        query.stride(0), query.stride(1), cache.stride(1), block_tables.stride(0),
        part.stride(0), part.stride(1), part.stride(2), lse.stride(0), lse.stride(1),
        heads, num_splits,
        R=latent_dim, PE=width - latent_dim, PAGE=cache.shape[1], BLOCK_R=dot_width(latent_dim),
        BLOCK_PE=dot_width(width - latent_dim), BLOCK_H=block_h, BLOCK_N=block_n,
        PRECISION=dot_precision(query), WIDEN=widen_for_interpreter(query),
    )
    if not direct:
        _merge_kernel[(batch, heads)](
            part, lse, out,
            part.stride(0), part.stride(1), part.stride(2), lse.stride(0), lse.stride(1),
            out.stride(0), out.stride(1), num_splits,
            R=latent_dim, BLOCK_R=dot_width(latent_dim), BLOCK_S=triton.next_power_of_2(num_splits),
        )
    return out
