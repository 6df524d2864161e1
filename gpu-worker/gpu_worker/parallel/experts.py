"""Expert parallelism: routed experts split by index over the ranks, tokens moved to them by all-to-all.

After attention every rank holds the same [T, dim] hidden states. Rank r takes the r-th of N equal chunks
of the tokens, routes them, and sends each (token, expert) copy to the rank owning that expert (dispatch);
the owner runs its local experts on what it received, weighted by the routing weights, and sends the rows
back (combine); rank r sums each token's k rows, adds the replicated shared experts, and an all-gather of
the chunks gives every rank the whole [T, dim] again. Each token's expert work runs once, on the rank
holding the expert, and no rank ever holds another rank's expert weights.

gloo (CPU) implements all_to_all_single with uneven splits, so the CPU path is the same code as NCCL's.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.distributed as dist

from .state import Parallel, current

# (rows [R, dim], weights [R, 1], local expert ids [R, 1]) -> weighted expert outputs [R, dim]
LocalExperts = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def expert_parallel_moe(
    x: torch.Tensor,
    route: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    local_experts: LocalExperts,
    experts_per_rank: int,
    top_k: int,
    shared: Callable[[torch.Tensor], torch.Tensor] | None = None,
    parallel: Parallel | None = None,
) -> torch.Tensor:
    """x [T, dim], the same on every rank -> MoE output [T, dim], the same on every rank."""
    p = parallel or current()
    tokens = x.shape[0]
    chunk = math.ceil(tokens / p.size)
    mine = x[p.rank * chunk : (p.rank + 1) * chunk]  # may be empty when T < N
    if mine.shape[0]:
        weights, ids = route(mine)  # [t, k]
    else:
        weights, ids = mine.new_empty(0, top_k, dtype=torch.float32), torch.empty(0, top_k, dtype=torch.long, device=x.device)

    # dispatch: copies sorted by destination rank
    owner = (ids // experts_per_rank).flatten()
    order = owner.argsort(stable=True)
    send_counts = torch.bincount(owner, minlength=p.size)
    recv_counts = exchange(send_counts, None, None, p)
    send, receive = send_counts.tolist(), recv_counts.tolist()
    rows = exchange(mine[order // top_k], receive, send, p)
    local_ids = exchange((ids.flatten() % experts_per_rank)[order], receive, send, p)
    row_weights = exchange(weights.flatten()[order], receive, send, p)

    out = local_experts(rows, row_weights[:, None], local_ids[:, None]) if rows.shape[0] else rows

    # combine: back to the sender, in the order it sent, then each token's k copies summed
    returned = exchange(out, send, receive, p)
    copies = returned[order.argsort()].view(-1, top_k, x.shape[1])
    y = copies.sum(dim=1).to(x.dtype)
    if shared is not None:
        y = y + shared(mine)
    return gather_chunks(y, chunk, tokens, p)


def exchange(t: torch.Tensor, out_counts: list[int] | None, in_counts: list[int] | None, p: Parallel) -> torch.Tensor:
    """all_to_all_single: rank j receives in_counts[j]-row block j of t; out_counts[j] rows arrive from j.
    Without counts, one element per rank each way."""
    shape = (sum(out_counts),) + tuple(t.shape[1:]) if out_counts is not None else t.shape
    out = t.new_empty(shape)
    dist.all_to_all_single(out, t.contiguous(), out_counts, in_counts, group=p.group)
    return out


def gather_chunks(y: torch.Tensor, chunk: int, tokens: int, p: Parallel) -> torch.Tensor:
    """Every rank's [<= chunk, dim] rows, in rank order -> [tokens, dim] (chunks padded to equal size)."""
    padded = y.new_zeros(chunk, y.shape[1])
    padded[: y.shape[0]] = y
    parts = [torch.empty_like(padded) for _ in range(p.size)]
    dist.all_gather(parts, padded, group=p.group)
    return torch.cat(parts)[:tokens]
