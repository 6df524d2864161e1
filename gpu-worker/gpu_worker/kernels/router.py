"""Fused DeepSeek-V3 router: from the gate's logits to each token's top-k experts and weights in one
launch (sigmoid, correction bias for selection only, group-limited top-k, normalisation, scaling).
The reference is `gpu_worker.model.moe.Router.forward`.

The gate product itself (x @ W_gate^T, fp32) stays a cuBLAS GEMM: at prefill sizes it is a real
matrix product, and what the fusion saves is the dozen small elementwise, top-k and scatter launches
after it."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _pick_max(values, index, NONE: tl.constexpr):
    """(largest value, its lowest index) of a 2-D block; NONE marks indices not to consider."""
    best = tl.max(tl.max(values, axis=1), axis=0)
    return best, tl.min(tl.min(tl.where(values == best, index, NONE), axis=1), axis=0)


@triton.jit
def _router_kernel(logits_ptr, bias_ptr, weights_ptr, ids_ptr, stride_t, scale,
                   N_GROUP: tl.constexpr, GROUP_SIZE: tl.constexpr, TOPK_GROUP: tl.constexpr,
                   TOP_K: tl.constexpr, G_PAD: tl.constexpr, S_PAD: tl.constexpr, K_PAD: tl.constexpr,
                   LIMIT_GROUPS: tl.constexpr, NORMALISE: tl.constexpr):
    token = tl.program_id(0)
    group = tl.arange(0, G_PAD)
    member = tl.arange(0, S_PAD)
    valid = (group[:, None] < N_GROUP) & (member[None, :] < GROUP_SIZE)
    # experts laid out [group, member]; padding gets an index no expert has
    expert = tl.where(valid, group[:, None] * GROUP_SIZE + member[None, :], G_PAD * S_PAD)
    logits = tl.load(logits_ptr + token * stride_t + expert, mask=valid, other=0.0).to(tl.float32)
    scores = tl.sigmoid(logits)
    bias = tl.load(bias_ptr + expert, mask=valid, other=0.0)
    choice = tl.where(valid, scores + bias, float("-inf"))

    if LIMIT_GROUPS:
        # a group scores the sum of its two best biased scores; only the best TOPK_GROUP groups stay
        best = tl.max(choice, axis=1)
        first = tl.min(tl.where(choice == best[:, None], member[None, :], S_PAD), axis=1)
        second = tl.max(tl.where(member[None, :] == first[:, None], float("-inf"), choice), axis=1)
        group_score = tl.where(group < N_GROUP, best + second, float("-inf"))
        keep = group < 0
        for _ in tl.static_range(TOPK_GROUP):
            top = tl.max(group_score, axis=0)
            kept = tl.min(tl.where(group_score == top, group, G_PAD), axis=0)
            keep = keep | (group == kept)
            group_score = tl.where(group == kept, float("-inf"), group_score)
        choice = tl.where(keep[:, None], choice, float("-inf"))

    slot = tl.arange(0, K_PAD)
    chosen_ids = tl.zeros((K_PAD,), dtype=tl.int64)
    chosen_weights = tl.zeros((K_PAD,), dtype=tl.float32)
    for k in tl.static_range(TOP_K):
        _, pick = _pick_max(choice, expert, G_PAD * S_PAD + 1)
        weight = tl.sum(tl.sum(tl.where(expert == pick, scores, 0.0), axis=1), axis=0)  # the unbiased score
        chosen_ids = tl.where(slot == k, pick, chosen_ids)
        chosen_weights = tl.where(slot == k, weight, chosen_weights)
        choice = tl.where(expert == pick, float("-inf"), choice)
    if NORMALISE:
        chosen_weights = chosen_weights / (tl.sum(chosen_weights, axis=0) + 1e-20)
    out = token * TOP_K + slot
    tl.store(ids_ptr + out, chosen_ids, mask=slot < TOP_K)
    tl.store(weights_ptr + out, chosen_weights * scale, mask=slot < TOP_K)


def fused_route(logits: torch.Tensor, bias: torch.Tensor, top_k: int, n_group: int, topk_group: int,
                normalise: bool, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [T, E] (x @ W_gate^T), bias [E] -> (weights [T, top_k] float32, expert ids [T, top_k] int64),
    each token's experts in descending order of biased score."""
    tokens, experts = logits.shape
    weights = torch.empty(tokens, top_k, dtype=torch.float32, device=logits.device)
    ids = torch.empty(tokens, top_k, dtype=torch.int64, device=logits.device)
    if tokens == 0:
        return weights, ids
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    group_size = experts // n_group
    _router_kernel[(tokens,)](
        logits, bias, weights, ids, logits.stride(0), float(scale),
        N_GROUP=n_group, GROUP_SIZE=group_size, TOPK_GROUP=topk_group, TOP_K=top_k,
        G_PAD=triton.next_power_of_2(n_group), S_PAD=triton.next_power_of_2(group_size),
        K_PAD=triton.next_power_of_2(top_k), LIMIT_GROUPS=n_group > 1 and topk_group < n_group,
        NORMALISE=normalise, num_warps=1 if experts <= 64 else 4)
    return weights, ids
