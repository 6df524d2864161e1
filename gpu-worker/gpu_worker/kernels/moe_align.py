"""Sort a step's (token, slot) pairs by expert into blocks of one expert each, on the device: every
shape depends only on the token count (no host sync), so a CUDA graph can replay it. Each expert's
run is padded to a multiple of `block`; the worst case fixes the buffer size. Ids outside
[0, num_experts) (another rank's experts) land in blocks marked -1, which the GEMM zero-fills."""

from __future__ import annotations

import torch


def align_by_expert(ids: torch.Tensor, num_experts: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ids [T, k] -> (pairs [capacity] int64: flat pair index t * k + slot, runs of one expert padded to
    `block` with the value T * k; block_experts [capacity / block] int64: the expert of each block, -1
    for padding blocks and pairs of experts not in [0, num_experts))."""
    flat = ids.flatten()
    pairs = flat.numel()
    # bucket num_experts collects the experts this call does not hold
    bucket = torch.where((flat >= 0) & (flat < num_experts), flat, num_experts)
    counts = torch.zeros(num_experts + 1, dtype=torch.int64, device=ids.device)
    counts.scatter_add_(0, bucket, torch.ones_like(bucket))  # bincount would read its size on the host
    padded = (counts + block - 1) // block * block
    padded_end = padded.cumsum(0)
    order = bucket.argsort(stable=True)
    sorted_bucket = bucket[order]
    rank_in_bucket = torch.arange(pairs, device=ids.device) - (counts.cumsum(0) - counts)[sorted_bucket]
    destination = (padded_end - padded)[sorted_bucket] + rank_in_bucket

    used_buckets = min(num_experts + 1, pairs)
    capacity = -(-(pairs + used_buckets * (block - 1)) // block) * block
    sorted_pairs = torch.full((capacity,), pairs, dtype=torch.int64, device=ids.device)
    sorted_pairs.scatter_(0, destination, order)
    block_starts = torch.arange(0, capacity, block, device=ids.device)
    block_experts = torch.searchsorted(padded_end, block_starts, right=True)
    block_experts = torch.where(block_experts < num_experts, block_experts, -1)
    return sorted_pairs, block_experts
