"""FP8 W8A8 GEMM in DeepSeek-V3's layout: activations quantised to e4m3 per token per 128 channels
(`act_quant`), weights e4m3 with one fp32 scale per 128x128 block, products accumulated in fp32
(`w8a8_linear`). The torch reference is `gpu_worker.model.fp8` (dequantise, then matmul)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import BLOCK


@triton.jit
def round_to_e4m3(x):
    """x (fp32, |x| <= 448) rounded to the nearest e4m3 value, ties to even, still in fp32, so the
    cast after it is exact. A GPU's cast alone rounds the same way; Triton's interpreter drops the
    carry when rounding up crosses a power of two."""
    bits = x.to(tl.uint32, bitcast=True)
    # normal e4m3 numbers keep 3 of fp32's 23 mantissa bits: round the other 20 off, ties to even
    lsb = (bits >> 20) & 1
    normal = (((bits + 0x7FFFF + lsb) >> 20) << 20).to(tl.float32, bitcast=True)
    # below 2^-6 e4m3 is subnormal with a fixed step of 2^-9: adding 1.5 * 2^14 rounds to that step
    subnormal = (x + 24576.0) - 24576.0
    return tl.where(tl.abs(x) < 0.015625, subnormal, normal)


@triton.jit
def _act_quant_kernel(x_ptr, q_ptr, s_ptr, M, K, groups_per_row, stride_xm, stride_qm, stride_sm,
                      GROUPS: tl.constexpr, GROUP_SIZE: tl.constexpr):
    # a program quantises GROUPS consecutive (row, group) pairs, row-major, whatever the row width:
    # short rows (decode, small models) do not leave programs nearly empty
    pair = tl.program_id(0) * GROUPS + tl.arange(0, GROUPS)
    row, group = pair // groups_per_row, pair % groups_per_row
    cols = group[:, None] * GROUP_SIZE + tl.arange(0, GROUP_SIZE)[None, :]  # [GROUPS, GROUP_SIZE]
    mask = (row < M)[:, None] & (cols < K)
    x = tl.load(x_ptr + row[:, None] * stride_xm + cols, mask=mask, other=0.0).to(tl.float32)
    # 448 is e4m3fn's largest value; the 1e-4 floor gives an all-zero group a finite scale (as DeepSeek's)
    scale = tl.maximum(tl.max(tl.abs(x), axis=1), 1e-4) / 448.0
    q = round_to_e4m3(tl.clamp(x / scale[:, None], -448.0, 448.0))
    tl.store(q_ptr + row[:, None] * stride_qm + cols, q.to(tl.float8e4nv), mask=mask)
    tl.store(s_ptr + row * stride_sm + group, scale, mask=row < M)


def act_quant(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, K] -> (e4m3 [M, K], fp32 scales [M, ceil(K/128)]) with x ~ q * scale per 128-channel group."""
    m, k = x.shape
    groups = triton.cdiv(k, BLOCK)
    q = torch.empty(m, k, dtype=torch.float8_e4m3fn, device=x.device)
    scales = torch.empty(m, groups, dtype=torch.float32, device=x.device)
    if m == 0:
        return q, scales
    per_program = min(16, triton.next_power_of_2(m * groups))  # 2048 channels a program
    _act_quant_kernel[(triton.cdiv(m * groups, per_program),)](
        x, q, scales, m, k, groups, x.stride(0), q.stride(0), scales.stride(0),
        GROUPS=per_program, GROUP_SIZE=BLOCK)
    return q, scales


@triton.jit
def weight_scale_row(n, SPLIT_ROW, SPLIT_SCALE_ROW):
    """The scale row of weight row n. Two checkpoint tensors stacked along rows (gate/up, q_a/kv_a)
    keep their own 128-row blocks: rows from SPLIT_ROW on use scale rows from SPLIT_SCALE_ROW on."""
    return tl.where(n < SPLIT_ROW, n // 128, SPLIT_SCALE_ROW + (n - SPLIT_ROW) // 128)


@triton.jit
def _w8a8_gemm_kernel(a_ptr, as_ptr, b_ptr, bs_ptr, c_ptr, M, N, K, SPLIT_ROW, SPLIT_SCALE_ROW,
                      stride_am, stride_asm, stride_bn, stride_bsn, stride_cm,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m, mask_n = offs_m < M, offs_n < N
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :]
    b_ptrs = b_ptr + offs_n[None, :] * stride_bn + offs_k[:, None]
    as_ptrs = as_ptr + offs_m * stride_asm
    bs_ptrs = bs_ptr + weight_scale_row(offs_n, SPLIT_ROW, SPLIT_SCALE_ROW) * stride_bsn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kb in range(0, tl.cdiv(K, BLOCK_K)):
        mask_k = offs_k < K - kb * BLOCK_K  # the last block may be partial: zeros add nothing
        a = tl.load(a_ptrs, mask=mask_m[:, None] & mask_k[None, :], other=0.0)
        b = tl.load(b_ptrs, mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        a_scale = tl.load(as_ptrs + kb, mask=mask_m, other=0.0)
        b_scale = tl.load(bs_ptrs + kb, mask=mask_n, other=0.0)
        # one K block = one scale per row of A and per column of B: scale the block's partial product
        acc += tl.dot(a, b) * a_scale[:, None] * b_scale[None, :]
        a_ptrs += BLOCK_K
        b_ptrs += BLOCK_K
    c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :]
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


def block_m_for(rows: int) -> int:
    """Decode has a handful of rows: a small M tile wastes less of each tensor-core product."""
    return 16 if rows <= 16 else 32 if rows <= 32 else 64


def w8a8_linear(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor,
                split: int | None = None) -> torch.Tensor:
    """x [..., K] (any float dtype) times the e4m3 weight [N, K] with block scales [*, ceil(K/128)] ->
    [..., N] in x's dtype. `split`: see weight_scale_row."""
    n, k = weight.shape
    assert weight.stride(1) == 1 and scale.stride(1) == 1, "weight and scales must be row-major"
    lead = x.shape[:-1]
    x = x.reshape(-1, k)
    if x.stride(-1) != 1:
        x = x.contiguous()
    a, a_scale = act_quant(x)
    m = a.shape[0]
    out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    split_row = n if split is None else split
    # a decode step's few rows: narrower column tiles, so a [7168, N] weight still fills every SM
    block_m, block_n = block_m_for(m), 64 if m <= 64 else 128
    grid = (triton.cdiv(m, block_m), triton.cdiv(n, block_n))
    if m:
        _w8a8_gemm_kernel[grid](
            a, a_scale, weight, scale, out, m, n, k, split_row, triton.cdiv(split_row, BLOCK),
            a.stride(0), a_scale.stride(0), weight.stride(0), scale.stride(0), out.stride(0),
            BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=BLOCK)
    return out.view(*lead, n)
