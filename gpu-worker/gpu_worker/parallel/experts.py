"""Expert parallelism: rank r routes the r-th of N chunks of the (replicated) tokens, sends each
(token, expert) copy to the expert's rank and gets the weighted row back (all-to-all), sums each
token's rows plus the shared experts; an all-gather of the chunks gives every rank [T, dim]. gloo
does uneven all_to_all_single too, so the CPU path is NCCL's code.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.distributed as dist

from .state import current

# (rows [R, dim], weights [R, 1], local expert ids [R, 1]) -> weighted expert outputs [R, dim]
LocalExperts = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def expert_parallel_moe(x: torch.Tensor, route: Callable, local_experts: LocalExperts,
                        experts_per_rank: int, top_k: int, shared: Callable | None) -> torch.Tensor:
    """x [T, dim], the same on every rank -> MoE output [T, dim], the same on every rank. route(x)
    gives the routing (weights, expert ids) [t, top_k]; shared: the replicated shared experts."""
    p = current()
    tokens = x.shape[0]
    chunk = math.ceil(tokens / p.size)
    mine = x[p.rank * chunk : (p.rank + 1) * chunk]  # may be empty when T < N
    if mine.shape[0]:
        weights, ids = route(mine)
    else:
        weights = mine.new_empty(0, top_k, dtype=torch.float32)
        ids = torch.empty(0, top_k, dtype=torch.long, device=x.device)

    # dispatch: copies sorted by destination rank
    owner = (ids // experts_per_rank).flatten()
    order = owner.argsort(stable=True)
    send_counts = torch.bincount(owner, minlength=p.size)
    send, receive = send_counts.tolist(), exchange(send_counts).tolist()
    rows = exchange(mine[order // top_k], receive, send)
    local_ids = exchange((ids.flatten() % experts_per_rank)[order], receive, send)
    row_weights = exchange(weights.flatten()[order], receive, send)

    out = local_experts(rows, row_weights[:, None], local_ids[:, None]) if rows.shape[0] else rows

    # combine: back to the sender, in the order it sent, then each token's k copies summed
    returned = exchange(out, send, receive)
    y = returned[order.argsort()].view(-1, top_k, x.shape[1]).sum(dim=1).to(x.dtype)
    if shared is not None:
        y = y + shared(mine)
    # every rank's [<= chunk, dim] rows, padded to equal size, in rank order -> [tokens, dim]
    padded = y.new_zeros(chunk, y.shape[1])
    padded[: y.shape[0]] = y
    parts = [torch.empty_like(padded) for _ in range(p.size)]
    dist.all_gather(parts, padded, group=p.group)
    return torch.cat(parts)[:tokens]


def exchange(t: torch.Tensor, out_counts: list[int] | None = None,
             in_counts: list[int] | None = None) -> torch.Tensor:
    """all_to_all_single: in_counts[j] rows of t go to rank j and out_counts[j] rows arrive from it;
    without counts, one element each way."""
    out = t.new_empty((sum(out_counts), *t.shape[1:]) if out_counts is not None else t.shape)
    dist.all_to_all_single(out, t.contiguous(), out_counts, in_counts, group=current().group)
    return out
