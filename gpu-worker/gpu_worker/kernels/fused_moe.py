"""Fused MoE experts: the routed SwiGLU experts of a step as two grouped-GEMM launches over the
(token, slot) pairs sorted by expert (moe_align), bf16/fp32 or FP8 (W8A8, 128x128 weight blocks).

- gate_up: each program multiplies one block of one expert's pairs by that expert's gate and up rows,
  and writes silu(gate) * up: the [pairs, 2 * inter] product never reaches memory.
- down: the same over the activations, times each pair's routing weight in the epilogue.
Then each token sums its top-k rows. Nothing here reads a device value on the host.

A shared expert of the routed experts' width (DeepSeek-V3's one) can ride along as expert E, chosen by
every token with weight 1: its weights stay where they are (a second pointer), and it costs no launch
of its own.

The reference is `gpu_worker.model.moe.experts_reference` (one matmul per expert, on dequantised
weights)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import widen_for_interpreter
from .fp8_gemm import GROUP, act_quant, block_m_for, weight_scale_row
from .moe_align import align_by_expert


@triton.jit
def _expert_gemm_kernel(
    a_ptr, a_scale_ptr, w_ptr, w_scale_ptr, shared_w_ptr, shared_w_scale_ptr, out_ptr, pairs_ptr,
    block_experts_ptr, route_weights_ptr, num_experts, num_pairs, N, K, pairs_per_a_row, split_row, split_scale_row,
    stride_am, stride_asm, stride_we, stride_wn, stride_wse, stride_wsn, stride_om,
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
        tl.store(out_ptrs, tl.zeros((BLOCK_M, BLOCK_N), dtype=out_ptr.dtype.element_ty), mask=out_mask)
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
        gate_scale_ptrs = w_scale_base + weight_scale_row(offs_n, split_row, split_scale_row) * stride_wsn
        up_scale_ptrs = w_scale_base + weight_scale_row(offs_n + N, split_row, split_scale_row) * stride_wsn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kb in range(0, tl.cdiv(K, BLOCK_K)):
        mask_k = offs_k < K - kb * BLOCK_K
        a = tl.load(a_ptrs, mask=mask_m[:, None] & mask_k[None, :], other=0.0)
        w = tl.load(w_ptrs, mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        if SWIGLU:
            up = tl.load(up_ptrs, mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        if FP8:  # BLOCK_K is the 128-channel group: one activation scale per row, one weight scale per column
            a_scale = tl.load(a_scale_ptrs + kb, mask=mask_m, other=0.0)[:, None]
            acc += tl.dot(a, w) * a_scale * tl.load(gate_scale_ptrs + kb, mask=mask_n, other=0.0)[None, :]
            if SWIGLU:
                acc_up += tl.dot(a, up) * a_scale * tl.load(up_scale_ptrs + kb, mask=mask_n, other=0.0)[None, :]
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


def _expert_gemm(a, a_scale, w, w_scale, shared_w, shared_w_scale, out, sorted_pairs, block_experts,
                 route_weights, *, n, k, pairs_per_a_row, swiglu, block_m):
    fp8 = w.dtype == torch.float8_e4m3fn
    split_row = n if swiglu else w.shape[1]  # gate_up: the up rows have their own scale blocks
    # 64 columns a program: a decode step has only a few blocks of rows (one per chosen expert), and
    # narrow column tiles give it enough programs to keep every SM streaming weights
    block_n = 64
    block_k = GROUP if fp8 else 64
    grid = (block_experts.shape[0], triton.cdiv(n, block_n))
    a_scale = a if a_scale is None else a_scale  # unused without FP8; any pointer will do
    w_scale = w if w_scale is None else w_scale
    shared_w = w if shared_w is None else shared_w  # no shared expert: no block has expert E
    shared_w_scale = w_scale if shared_w_scale is None else shared_w_scale
    _expert_gemm_kernel[grid](
        a, a_scale, w, w_scale, shared_w, shared_w_scale, out, sorted_pairs, block_experts, route_weights,
        w.shape[0], route_weights.numel(), n, k, pairs_per_a_row, split_row, triton.cdiv(split_row, GROUP),
        a.stride(0), a_scale.stride(0), w.stride(0), w.stride(1), w_scale.stride(0),
        w_scale.stride(1) if w_scale.dim() > 1 else 0, out.stride(0),
        SWIGLU=swiglu, ROUTE_WEIGHT=not swiglu, FP8=fp8,
        PRECISION="ieee" if a.dtype == torch.float32 else None,  # float32 models get float32 products
        WIDEN=widen_for_interpreter(a),
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k)


def fused_experts(x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor, gate_up: torch.Tensor,
                  down: torch.Tensor, gate_up_scale: torch.Tensor | None = None,
                  down_scale: torch.Tensor | None = None, shared: tuple | None = None) -> torch.Tensor:
    """sum_k weights[t, k] * expert_{ids[t, k]}(x[t]) -> [T, dim] in x's dtype.

    x [T, dim]; weights [T, k] float32; ids [T, k] (ids outside [0, E) contribute nothing);
    gate_up [E, 2 * inter, dim] (gate rows, then up rows), down [E, dim, inter], both bf16/fp16/fp32 or
    float8_e4m3fn with scales gate_up_scale [E, 2 * ceil(inter/128), ceil(dim/128)] (gate's 128-row
    blocks, then up's) and down_scale [E, ceil(dim/128), ceil(inter/128)].

    shared: (gate_up [2 * inter, dim], down [dim, inter], their scales or None), one more expert added
    to every token with weight 1 (contiguous, the same dtype and layout as one routed expert)."""
    experts, two_inter, dim = gate_up.shape
    inter = two_inter // 2
    shared_gate_up = shared_down = shared_gate_up_scale = shared_down_scale = None
    if shared is not None:
        shared_gate_up, shared_down, shared_gate_up_scale, shared_down_scale = shared
        if shared_gate_up.shape != gate_up.shape[1:] or shared_down.shape != down.shape[1:]:
            raise ValueError(f"a folded shared expert must have the routed experts' shapes, got "
                             f"{tuple(shared_gate_up.shape)} and {tuple(shared_down.shape)}")
        held = (ids >= 0) & (ids < experts)  # an id E from elsewhere must not reach the shared expert
        ids = torch.cat((torch.where(held, ids, -1), ids.new_full((ids.shape[0], 1), experts)), dim=1)
        weights = torch.cat((weights.float(), weights.new_ones(weights.shape[0], 1, dtype=torch.float32)), dim=1)
    tokens, top_k = ids.shape
    pairs = tokens * top_k
    fp8 = gate_up.dtype == torch.float8_e4m3fn
    chosen = experts + (shared is not None)
    block_m = block_m_for(pairs / chosen)  # decode gives each expert a pair or two: small blocks waste less
    sorted_pairs, block_experts = align_by_expert(ids, chosen, block_m)
    route_weights = weights.reshape(-1).float().contiguous()
    x = x.contiguous()

    out = torch.empty(pairs, dim, dtype=x.dtype, device=x.device)
    if pairs:
        a, a_scale = act_quant(x) if fp8 else (x, None)
        activation = torch.empty(pairs, inter, dtype=x.dtype, device=x.device)
        _expert_gemm(a, a_scale, gate_up, gate_up_scale, shared_gate_up, shared_gate_up_scale, activation,
                     sorted_pairs, block_experts, route_weights, n=inter, k=dim, pairs_per_a_row=top_k,
                     swiglu=True, block_m=block_m)
        a, a_scale = act_quant(activation) if fp8 else (activation, None)
        _expert_gemm(a, a_scale, down, down_scale, shared_down, shared_down_scale, out, sorted_pairs,
                     block_experts, route_weights, n=dim, k=inter, pairs_per_a_row=1, swiglu=False,
                     block_m=block_m)
    return out.view(tokens, top_k, dim).sum(dim=1)
