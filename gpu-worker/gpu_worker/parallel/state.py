"""Which rank this process is and how the model is split, set once at start-up (as DeepSeek's
inference/model.py does); the default is one rank holding everything.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch.distributed as dist


@dataclass(frozen=True)
class Parallel:
    rank: int = 0
    size: int = 1
    expert_parallel: bool = False
    group: dist.ProcessGroup | None = None  # the model's collectives

    def part(self, total: int, what: str) -> slice:
        """This rank's contiguous 1/size of `total` items, which must divide evenly."""
        if total % self.size:
            raise ValueError(f"{what} ({total}) is not divisible by the tensor-parallel size {self.size}")
        each = total // self.size
        return slice(self.rank * each, (self.rank + 1) * each)

    def padded_part(self, total: int) -> tuple[int, slice]:
        """(rows per rank, this rank's rows of `total`) when `total` need not divide: ceil(total/size) rows
        per rank, the last ranks' tails past `total` left as padding."""
        each = math.ceil(total / self.size)
        start = min(total, self.rank * each)
        return each, slice(start, min(total, start + each))


_current = Parallel()


def current() -> Parallel:
    return _current


def set_current(parallel: Parallel) -> None:
    global _current
    _current = parallel


@contextmanager
def using(parallel: Parallel):
    """Build a model for `parallel` (tests build single-rank references in the same process)."""
    previous = current()
    set_current(parallel)
    try:
        yield parallel
    finally:
        set_current(previous)
