"""One packed step's attention inputs, in two parts: decode (the leading one-token sequences:
fixed-shape device tensors and host ints only, so a CUDA graph can replay it) and prefill (the
others, over packed variable-length contexts; never graphed, so it may keep host lists)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from itertools import accumulate
from typing import Sequence

import torch

# Decode split-K: each split covers at least this many context tokens (a shorter split costs more in
# the merge than it wins in parallelism), at most MAX_DECODE_SPLITS of them.
MIN_SPLIT_TOKENS = 256
MAX_DECODE_SPLITS = 32


@dataclass
class DecodePart:
    block_tables: torch.Tensor  # [D, W] physical block ids, padded (padding unused)
    context_lens: torch.Tensor  # [D] tokens in the cache after this step
    max_context_len: int  # host upper bound of context_lens
    num_splits: int  # split-K factor of the decode kernel
    block_size: int

    @functools.cached_property
    def context_slots(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(slots [D, L], valid [D, L]): the cache slot of every context position, for the torch
        reference. Positions past a context point at its first block."""
        pos = torch.arange(self.max_context_len, device=self.context_lens.device)
        index = (pos // self.block_size).clamp(max=self.block_tables.shape[1] - 1)
        valid = pos[None, :] < self.context_lens[:, None]
        blocks = torch.where(valid, self.block_tables[:, index], self.block_tables[:, :1])
        return blocks * self.block_size + pos % self.block_size, valid


@dataclass
class PrefillPart:
    cu_query_lens: torch.Tensor  # [P+1] int32 offsets of each sequence's new tokens
    cu_context_lens: torch.Tensor  # [P+1] int32 offsets of each sequence's context in context_slots
    context_slots: torch.Tensor  # [sum of context_lens] cache slot of every context token, packed
    query_lens: list[int]
    context_lens: list[int]

    @property
    def max_query_len(self) -> int:
        return max(self.query_lens)


@dataclass
class AttentionMetadata:
    cu_query_lens: torch.Tensor  # [B+1] offsets of each sequence's new tokens in the packed batch
    context_lens: torch.Tensor  # [B] tokens in the cache after this step (cached before + new)
    block_tables: torch.Tensor  # [B, max_blocks] physical block ids, padded (padding value unused)
    slot_mapping: torch.Tensor  # [T] block_id * block_size + offset of each new token
    block_size: int
    max_context_len: int
    max_query_len: int = 1
    # The host's copy of the lengths, which a step with prefills needs (`build` fills them). A
    # decode-only step (max_query_len 1, a CUDA graph's replay) needs neither.
    host_query_lens: list[int] | None = None
    host_context_lens: list[int] | None = None
    num_decodes: int | None = None  # leading one-token sequences; all when max_query_len == 1
    num_splits: int | None = None  # decode split-K factor; `decode_splits` when None

    @classmethod
    def build(cls, seqs: Sequence[tuple[Sequence[int], int, int]], block_size: int = 64,
              device: torch.device | str = "cpu") -> "AttentionMetadata":
        """seqs: (block_table, num_cached, num_new) per sequence, in packed order."""
        slots, query_lens, context_lens = [], [], []
        for table, cached, new in seqs:
            total = cached + new
            query_lens.append(new)
            context_lens.append(total)
            slots += [table[p // block_size] * block_size + p % block_size
                      for p in range(cached, total)]
        width = max(len(t) for t, _, _ in seqs)
        tables = [list(t) + [0] * (width - len(t)) for t, _, _ in seqs]
        as_long = dict(dtype=torch.long, device=device)
        return cls(
            cu_query_lens=torch.tensor([0, *accumulate(query_lens)], **as_long),
            context_lens=torch.tensor(context_lens, **as_long),
            block_tables=torch.tensor(tables, **as_long),
            slot_mapping=torch.tensor(slots, **as_long),
            block_size=block_size, max_context_len=max(context_lens), max_query_len=max(query_lens),
            host_query_lens=query_lens, host_context_lens=context_lens,
        )

    def __post_init__(self):
        if self.num_decodes is None:
            lens = self.host_query_lens or [1] * self.context_lens.shape[0]
            self.num_decodes = next((i for i, n in enumerate(lens) if n != 1), len(lens))

    @functools.cached_property
    def decode(self) -> DecodePart | None:
        d = self.num_decodes
        if d == 0:
            return None
        lens = self.host_context_lens
        longest = self.max_context_len if lens is None else max(lens[:d])
        splits = self.num_splits or decode_splits(d, longest, self.context_lens.device)
        return DecodePart(self.block_tables[:d], self.context_lens[:d], longest, splits,
                          self.block_size)

    @functools.cached_property
    def prefill(self) -> PrefillPart | None:
        d = self.num_decodes
        if d == self.context_lens.shape[0]:
            return None
        query_lens, context_lens = self.host_query_lens[d:], self.host_context_lens[d:]
        device = self.context_lens.device
        cu_q = torch.tensor([0, *accumulate(query_lens)], dtype=torch.int32, device=device)
        cu_k = torch.tensor([0, *accumulate(context_lens)], dtype=torch.int32, device=device)
        total = sum(context_lens)
        seq = torch.repeat_interleave(torch.arange(len(context_lens), device=device),
                                      torch.tensor(context_lens, device=device), output_size=total)
        pos = torch.arange(total, device=device) - cu_k[seq]
        blocks = self.block_tables[d:][seq, pos // self.block_size]
        slots = blocks * self.block_size + pos % self.block_size
        return PrefillPart(cu_q, cu_k, slots, query_lens, context_lens)


def decode_splits(num_seqs: int, max_context_len: int, device: torch.device) -> int:
    """Split-K factor from the host's batch description: enough programs to fill the GPU twice over,
    each split at least MIN_SPLIT_TOKENS long."""
    fill = -(-2 * _processor_count(device) // max(num_seqs, 1))
    return max(1, min(MAX_DECODE_SPLITS, fill, max_context_len // MIN_SPLIT_TOKENS))


@functools.lru_cache(maxsize=None)
def _processor_count(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 8  # the interpreter has no processors to fill; a few splits exercise long contexts
