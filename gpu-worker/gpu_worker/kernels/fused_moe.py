"""Fused MoE experts (reference: `gpu_worker.model.moe.experts_reference`): two grouped-GEMM
launches over the (token, slot) pairs sorted by expert, bf16/fp32 or FP8 W8A8. gate_up writes
silu(gate) * up (the [pairs, 2 * inter] product never reaches memory); down applies each pair's
routing weight in the epilogue. No host sync. A shared expert of the routed width can ride along as
expert E, taken by every token with weight 1 (a second weight pointer, no extra launch)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import BLOCK, dot_precision, widen_for_interpreter
from .fp8_gemm import act_quant, block_m_for, weight_scale_row
from .moe_align import align_by_expert


@triton.jit
def _expert_gemm_kernel(
    a_ptr, a_scale_ptr, w_ptr, w_scale_ptr, shared_w_ptr, shared_w_scale_ptr, out_ptr, pairs_ptr,
    block_experts_ptr, route_weights_ptr, num_experts, num_pairs, N, K, pairs_per_a_row, split_row,
    split_scale_row, stride_am, stride_asm, stride_we, stride_wn, stride_wse, stride_wsn, stride_om,
    SWIGLU: tl.constexpr, ROUTE_WEIGHT: tl.constexpr, FP8: tl.constexpr, PRECISION: tl.constexpr,
    WIDEN: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    pairs = tl.load(pairs_ptr + pid_m * BLOCK_M + tl.arange(0, BLOCK_M))
    mask_m = pairs < num_pairs
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    out_ptrs = out_ptr + pairs[:, None] * stride_om + offs_n[None, :]
    out_mask = mask_m[:, None] & mask_n[None, :]
    expert = tl.load(block_experts_ptr + pid_m)
    if expert < 0:  # padding, or pairs of experts held elsewhere: they contribute nothing
        zeros = tl.zeros((BLOCK_M, BLOCK_N), dtype=out_ptr.dtype.element_ty)
        tl.store(out_ptrs, zeros, mask=out_mask)
        return

    offs_k = tl.arange(0, BLOCK_K)
    a_rows = pairs // pairs_per_a_row  # gate_up reads the token's hidden state, down the pair's activation
    a_ptrs = a_ptr + a_rows[:, None] * stride_am + offs_k[None, :]
    w_base = w_ptr + expert * stride_we
    w_scale_base = w_scale_ptr + expert * stride_wse
    if expert == num_experts:  # the shared expert, laid out like one routed expert
        w_base = shared_w_ptr
        w_scale_base = shared_w_scale_ptr
    w_ptrs = w_base + offs_n[None, :] * stride_wn + offs_k[:, None]
    up_ptrs = w_ptrs + N * stride_wn  # SWIGLU: the up rows follow the N gate rows
    if FP8:
        a_scale_ptrs = a_scale_ptr + a_rows * stride_asm
        gate_rows = weight_scale_row(offs_n, split_row, split_scale_row)
        up_rows = weight_scale_row(offs_n + N, split_row, split_scale_row)
        gate_scales = w_scale_base + gate_rows * stride_wsn
        up_scales = w_scale_base + up_rows * stride_wsn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    # (the two products are written out: a nested jit function is slow in Triton's interpreter)
    for kb in range(0, tl.cdiv(K, BLOCK_K)):
        mask_k = offs_k < K - kb * BLOCK_K
        a = tl.load(a_ptrs, mask=mask_m[:, None] & mask_k[None, :], other=0.0)
        w = tl.load(w_ptrs, mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        if SWIGLU:
            up = tl.load(up_ptrs, mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        if FP8:  # BLOCK_K is one 128-channel group: one scale per row of a, one per column of w
            a_scale = tl.load(a_scale_ptrs + kb, mask=mask_m, other=0.0)[:, None]
            w_scale = tl.load(gate_scales + kb, mask=mask_n, other=0.0)[None, :]
            acc += tl.dot(a, w) * a_scale * w_scale
            if SWIGLU:
                up_scale = tl.load(up_scales + kb, mask=mask_n, other=0.0)[None, :]
                acc_up += tl.dot(a, up) * a_scale * up_scale
        else:
            if WIDEN:
                a, w = a.to(tl.float32), w.to(tl.float32)
            acc = tl.dot(a, w, acc, input_precision=PRECISION)
            if SWIGLU:
                if WIDEN:
                    up = up.to(tl.float32)
                acc_up = tl.dot(a, up, acc_up, input_precision=PRECISION)
        a_ptrs += BLOCK_K
        w_ptrs += BLOCK_K
        up_ptrs += BLOCK_K
    if SWIGLU:
        acc = acc * tl.sigmoid(acc) * acc_up
    if ROUTE_WEIGHT:
        acc = acc * tl.load(route_weights_ptr + pairs, mask=mask_m, other=0.0)[:, None]
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=out_mask)


def _expert_gemm(x, w, w_scale, shared, out, sorted_pairs, block_experts, route_weights, *,
                 pairs_per_a_row, swiglu, block_m):
    """One grouped GEMM: x [rows, K] by each block's expert of w [E, N (2N: swiglu), K] -> out."""
    fp8 = w.dtype == torch.float8_e4m3fn
    a, a_scale = act_quant(x) if fp8 else (x, x)  # without FP8 the scale pointers go unread
    w_scale = w if w_scale is None else w_scale
    # no shared expert: no block has expert E, and its pointers go unread
    shared_w, shared_w_scale = (w, w_scale) if shared is None else shared
    shared_w_scale = w_scale if shared_w_scale is None else shared_w_scale
    n = w.shape[1] // 2 if swiglu else w.shape[1]
    # 64 columns a program: a decode step has only a few blocks of rows (one per chosen expert), and
    # narrow column tiles give it enough programs to keep every SM streaming weights
    grid = (block_experts.shape[0], triton.cdiv(n, 64))
    _expert_gemm_kernel[grid](
        a, a_scale, w, w_scale, shared_w, shared_w_scale, out, sorted_pairs, block_experts,
        route_weights, w.shape[0], route_weights.numel(), n, x.shape[1], pairs_per_a_row, n,
        triton.cdiv(n, BLOCK), a.stride(0), a_scale.stride(0), w.stride(0), w.stride(1),
        w_scale.stride(0), w_scale.stride(1) if w_scale.dim() > 1 else 0, out.stride(0),
        SWIGLU=swiglu, ROUTE_WEIGHT=not swiglu, FP8=fp8, PRECISION=dot_precision(a),
        WIDEN=widen_for_interpreter(a), BLOCK_M=block_m, BLOCK_N=64, BLOCK_K=BLOCK if fp8 else 64)


def fused_experts(x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor, gate_up: torch.Tensor,
                  down: torch.Tensor, gate_up_scale: torch.Tensor | None = None,
                  down_scale: torch.Tensor | None = None, shared: tuple | None = None) -> torch.Tensor:
    """sum_k weights[t, k] * expert_{ids[t, k]}(x[t]) -> [T, dim]; ids outside [0, E) add nothing.
    gate_up [E, 2 * inter, dim] (gate rows, then up), down [E, dim, inter]; e4m3 ones come with
    128x128 block scales. shared: (gate_up, down, their scales) of one more expert."""
    experts, _, dim = gate_up.shape
    if shared is not None:
        if shared[0].shape != gate_up.shape[1:] or shared[1].shape != down.shape[1:]:
            raise ValueError(f"a folded shared expert must have the routed experts' shapes, got "
                             f"{tuple(shared[0].shape)} and {tuple(shared[1].shape)}")
        held = (ids >= 0) & (ids < experts)  # an id E from elsewhere must not reach the shared expert
        ids = torch.cat((torch.where(held, ids, -1), ids.new_full((ids.shape[0], 1), experts)), dim=1)
        ones = weights.new_ones(ids.shape[0], 1, dtype=torch.float32)
        weights = torch.cat((weights.float(), ones), dim=1)
    tokens, top_k = ids.shape
    pairs = tokens * top_k
    chosen = experts + (shared is not None)
    # decode gives each expert a pair or two: small blocks waste less
    block_m = block_m_for(pairs / chosen)
    sorted_pairs, block_experts = align_by_expert(ids, chosen, block_m)
    route_weights = weights.reshape(-1).float().contiguous()
    x = x.contiguous()
    out = torch.empty(pairs, dim, dtype=x.dtype, device=x.device)
    if pairs:
        activation = torch.empty(pairs, down.shape[2], dtype=x.dtype, device=x.device)
        routing = (sorted_pairs, block_experts, route_weights)
        shared_gate_up, shared_down = (shared[::2], shared[1::2]) if shared else (None, None)
        _expert_gemm(x, gate_up, gate_up_scale, shared_gate_up, activation, *routing,
                     pairs_per_a_row=top_k, swiglu=True, block_m=block_m)
        _expert_gemm(activation, down, down_scale, shared_down, out, *routing,
                     pairs_per_a_row=1, swiglu=False, block_m=block_m)
    return out.view(tokens, top_k, dim).sum(dim=1)
