"""Variable-length causal attention for MLA prefill: each sequence's new tokens against its whole
context (cached prefix + new tokens), sequences packed back to back, no padding.

Expanded form (the caller expands keys and values from the latent): Q*L*(nope + rope + v) per head
against the absorbed form's Q*L*(2R + rope), R = 512 vs nope = v = 128 in DeepSeek-V3. The rope key
is shared by the heads ([L, PE]). Query row i sees context positions 0 .. i + (L - Q).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import dot_precision, dot_width, widen_for_interpreter


@triton.jit
def _prefill_kernel(
    qn_ptr, qp_ptr, kn_ptr, kp_ptr, v_ptr, out_ptr, cu_q_ptr, cu_k_ptr,
    qn_stride_t, qn_stride_h, qp_stride_t, qp_stride_h, kn_stride_t, kn_stride_h, kp_stride_t,
    v_stride_t, v_stride_h, out_stride_t, out_stride_h,
    scale_log2,
    NOPE: tl.constexpr, PE: tl.constexpr, V: tl.constexpr,
    BLOCK_NOPE: tl.constexpr, BLOCK_PE: tl.constexpr, BLOCK_V: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr, WIDEN: tl.constexpr,
):
    row_block = tl.program_id(0)
    seq = tl.program_id(1)
    head = tl.program_id(2)
    q_start = tl.load(cu_q_ptr + seq)
    q_len = tl.load(cu_q_ptr + seq + 1) - q_start
    k_start = tl.load(cu_k_ptr + seq)
    k_len = tl.load(cu_k_ptr + seq + 1) - k_start
    prefix = k_len - q_len
    rows = row_block * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < q_len
    dn = tl.arange(0, BLOCK_NOPE)
    dp = tl.arange(0, BLOCK_PE)
    dv = tl.arange(0, BLOCK_V)

    q_tok = (q_start + rows).to(tl.int64)[:, None]
    q_nope = tl.load(qn_ptr + q_tok * qn_stride_t + head * qn_stride_h + dn[None, :],
                     mask=row_ok[:, None] & (dn[None, :] < NOPE), other=0.0)
    q_pe = tl.load(qp_ptr + q_tok * qp_stride_t + head * qp_stride_h + dp[None, :],
                   mask=row_ok[:, None] & (dp[None, :] < PE), other=0.0)
    if WIDEN:
        q_nope, q_pe = q_nope.to(tl.float32), q_pe.to(tl.float32)

    m = tl.full([BLOCK_M], float("-inf"), tl.float32)
    total = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_V], tl.float32)
    # a block of rows past the sequence's end has nothing to do: its key loop is empty
    last = tl.minimum(k_len, (row_block + 1) * BLOCK_M + prefix)
    end = tl.where(row_block * BLOCK_M < q_len, last, 0)
    for first in range(0, end, BLOCK_N):
        cols = first + tl.arange(0, BLOCK_N)
        col_ok = cols < k_len
        k_tok = (k_start + cols).to(tl.int64)[:, None]
        k_nope = tl.load(kn_ptr + k_tok * kn_stride_t + head * kn_stride_h + dn[None, :],
                         mask=col_ok[:, None] & (dn[None, :] < NOPE), other=0.0)
        k_pe = tl.load(kp_ptr + k_tok * kp_stride_t + dp[None, :],
                       mask=col_ok[:, None] & (dp[None, :] < PE), other=0.0)
        v = tl.load(v_ptr + k_tok * v_stride_t + head * v_stride_h + dv[None, :],
                    mask=col_ok[:, None] & (dv[None, :] < V), other=0.0)
        p_dtype = v.dtype  # probabilities meet the values in their dtype, as on a GPU
        if WIDEN:
            k_nope, k_pe, v = k_nope.to(tl.float32), k_pe.to(tl.float32), v.to(tl.float32)
        scores = tl.dot(q_nope, tl.trans(k_nope), input_precision=PRECISION)
        scores += tl.dot(q_pe, tl.trans(k_pe), input_precision=PRECISION)
        visible = (cols[None, :] <= rows[:, None] + prefix) & col_ok[None, :]
        # every row sees context position 0, so after the first block m is finite
        scores = tl.where(visible, scores * scale_log2, float("-inf"))
        m_new = tl.maximum(m, tl.max(scores, axis=1))  # online softmax, as in mla_decode
        rescale = tl.exp2(m - m_new)
        p = tl.exp2(scores - m_new[:, None])
        total = total * rescale + tl.sum(p, axis=1)
        p = p.to(p_dtype).to(v.dtype)
        acc = acc * rescale[:, None] + tl.dot(p, v, input_precision=PRECISION)
        m = m_new

    out = acc / tl.where(total == 0.0, 1.0, total)[:, None]
    tl.store(out_ptr + q_tok * out_stride_t + head * out_stride_h + dv[None, :],
             out.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & (dv[None, :] < V))


def mla_prefill(q_nope: torch.Tensor, q_pe: torch.Tensor, k_nope: torch.Tensor, k_pe: torch.Tensor,
                v: torch.Tensor, cu_query_lens: torch.Tensor, cu_context_lens: torch.Tensor,
                max_query_len: int, scale: float, block_m: int = 64, block_n: int = 64
                ) -> torch.Tensor:
    """q_nope [Q, H, nope], q_pe [Q, H, PE], k_nope [L, H, nope], k_pe [L, PE], v [L, H, v] (last dims
    contiguous), cu_query_lens / cu_context_lens [S+1] -> [Q, H, v] in q_nope's dtype."""
    tokens, heads, nope = q_nope.shape
    rope, v_dim = q_pe.shape[-1], v.shape[-1]
    if any(t.stride(-1) != 1 for t in (q_nope, q_pe, k_nope, k_pe, v)):
        raise ValueError("mla_prefill needs contiguous last dims")
    out = q_nope.new_empty(tokens, heads, v_dim)
    grid = (triton.cdiv(max_query_len, block_m), cu_query_lens.shape[0] - 1, heads)
    _prefill_kernel[grid](
        q_nope, q_pe, k_nope, k_pe, v, out, cu_query_lens, cu_context_lens,
        q_nope.stride(0), q_nope.stride(1), q_pe.stride(0), q_pe.stride(1),
        k_nope.stride(0), k_nope.stride(1), k_pe.stride(0), v.stride(0), v.stride(1),
        out.stride(0), out.stride(1),
        scale * 1.4426950408889634,
        NOPE=nope, PE=rope, V=v_dim,
        BLOCK_NOPE=dot_width(nope), BLOCK_PE=dot_width(rope), BLOCK_V=dot_width(v_dim),
        BLOCK_M=block_m, BLOCK_N=block_n, PRECISION=dot_precision(q_nope),
        WIDEN=widen_for_interpreter(q_nope),
    )
    return out
