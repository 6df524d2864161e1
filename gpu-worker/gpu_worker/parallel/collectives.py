"""The collectives the sharded model needs: all-reduce of partial sums, the vocab-parallel embedding
and logits. Each is the identity on a single rank."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .state import current


def all_reduce(x: torch.Tensor) -> torch.Tensor:
    """Sum of every rank's x (row-parallel outputs: each rank multiplied its slice of the inputs)."""
    if current().size > 1:
        dist.all_reduce(x, group=current().group)
    return x


def vocab_parallel_embedding(ids: torch.Tensor, shard: torch.Tensor) -> torch.Tensor:
    """ids [...] -> [..., dim]; this rank holds rows [rank * rows, (rank + 1) * rows) of the table.
    Ids of other ranks' rows contribute zeros here; the all-reduce adds the one rank's row that
    holds each."""
    p = current()
    if p.size == 1:
        return F.embedding(ids, shard)
    rows = shard.shape[0]
    local = ids - p.rank * rows
    mine = (local >= 0) & (local < rows)
    out = F.embedding(local.clamp(0, rows - 1), shard) * mine.unsqueeze(-1).to(shard.dtype)
    return all_reduce(out)


def gather_vocab(local: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """local [..., rows] logits of this rank's vocabulary rows -> [..., vocab_size] on every rank."""
    p = current()
    if p.size == 1:
        return local
    parts = [torch.empty_like(local) for _ in range(p.size)]
    dist.all_gather(parts, local.contiguous(), group=p.group)
    return torch.cat(parts, dim=-1)[..., :vocab_size]
