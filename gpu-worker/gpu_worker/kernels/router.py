"""Fused DeepSeek-V3 router (reference: `gpu_worker.model.moe.Router.forward`): gate logits to
each token's top-k experts and weights in one launch. The gate product itself stays a cuBLAS GEMM
(a real matrix product at prefill sizes); the fusion saves the dozen small launches after it."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _router_kernel(logits_ptr, bias_ptr, weights_ptr, ids_ptr, tokens, stride_t, scale,
                   N_GROUP: tl.constexpr, GROUP_SIZE: tl.constexpr, TOPK_GROUP: tl.constexpr,
                   TOP_K: tl.constexpr, BLOCK_T: tl.constexpr, G_PAD: tl.constexpr, S_PAD: tl.constexpr,
                   K_PAD: tl.constexpr, LIMIT_GROUPS: tl.constexpr, NORMALISE: tl.constexpr):
    # a program routes BLOCK_T tokens; each token's experts are laid out [group, member]
    token = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    group = tl.arange(0, G_PAD)
    member = tl.arange(0, S_PAD)
    valid = (group[:, None] < N_GROUP) & (member[None, :] < GROUP_SIZE)
    NONE = G_PAD * S_PAD  # the index of padding: no expert has it
    expert = tl.where(valid, group[:, None] * GROUP_SIZE + member[None, :], NONE)  # [G, S]
    mask = (token < tokens)[:, None, None] & valid[None, :, :]
    logits = tl.load(logits_ptr + token[:, None, None] * stride_t + expert[None, :, :], mask=mask, other=0.0)
    scores = tl.sigmoid(logits.to(tl.float32))  # [T, G, S]
    bias = tl.load(bias_ptr + expert, mask=valid, other=0.0)
    choice = tl.where(valid[None, :, :], scores + bias[None, :, :], float("-inf"))

    if LIMIT_GROUPS:
        # a group scores the sum of its two best biased scores; only the best TOPK_GROUP groups stay
        best = tl.max(choice, axis=2)  # [T, G]
        first = tl.min(tl.where(choice == best[:, :, None], member[None, None, :], S_PAD), axis=2)
        second = tl.max(tl.where(member[None, None, :] == first[:, :, None], float("-inf"), choice), axis=2)
        group_score = tl.where(group[None, :] < N_GROUP, best + second, float("-inf"))
        keep = group_score != group_score  # all false
        for _ in tl.static_range(TOPK_GROUP):
            top = tl.max(group_score, axis=1)
            kept = tl.min(tl.where(group_score == top[:, None], group[None, :], G_PAD), axis=1)
            hit = group[None, :] == kept[:, None]
            keep = keep | hit
            group_score = tl.where(hit, float("-inf"), group_score)
        choice = tl.where(keep[:, :, None], choice, float("-inf"))

    slot = tl.arange(0, K_PAD)[None, :]
    chosen_ids = tl.zeros((BLOCK_T, K_PAD), dtype=tl.int64)
    chosen_weights = tl.zeros((BLOCK_T, K_PAD), dtype=tl.float32)
    for k in tl.static_range(TOP_K):
        best = tl.max(tl.max(choice, axis=2), axis=1)  # [T]
        pick = tl.min(tl.min(tl.where(choice == best[:, None, None], expert[None, :, :], NONE + 1), axis=2), axis=1)
        hit = expert[None, :, :] == pick[:, None, None]
        weight = tl.sum(tl.sum(tl.where(hit, scores, 0.0), axis=2), axis=1)  # the unbiased score
        chosen_ids = tl.where(slot == k, pick[:, None], chosen_ids)
        chosen_weights = tl.where(slot == k, weight[:, None], chosen_weights)
        choice = tl.where(hit, float("-inf"), choice)
    if NORMALISE:
        chosen_weights = chosen_weights / (tl.sum(chosen_weights, axis=1)[:, None] + 1e-20)
    out = token[:, None] * TOP_K + slot
    out_mask = (token < tokens)[:, None] & (slot < TOP_K)
    tl.store(ids_ptr + out, chosen_ids, mask=out_mask)
    tl.store(weights_ptr + out, chosen_weights * scale, mask=out_mask)


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
    g_pad, s_pad = triton.next_power_of_2(n_group), triton.next_power_of_2(group_size)
    block_t = min(triton.next_power_of_2(tokens), max(1, 1024 // (g_pad * s_pad)))  # ~1024 scores a program
    _router_kernel[(triton.cdiv(tokens, block_t),)](
        logits, bias, weights, ids, tokens, logits.stride(0), float(scale),
        N_GROUP=n_group, GROUP_SIZE=group_size, TOPK_GROUP=topk_group, TOP_K=top_k, BLOCK_T=block_t,
        G_PAD=g_pad, S_PAD=s_pad, K_PAD=triton.next_power_of_2(top_k),
        LIMIT_GROUPS=n_group > 1 and topk_group < n_group, NORMALISE=normalise)
    return weights, ids
