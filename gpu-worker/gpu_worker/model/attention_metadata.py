"""Describes one packed forward step over a paged latent KV cache.

A step runs the new tokens of B sequences packed into one [T] batch. Sequence b owns
tokens cu_query_lens[b]:cu_query_lens[b+1]; after the step it has context_lens[b] tokens in the cache
(previously cached + new), stored in the physical blocks listed in its row of block_tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch


@dataclass
class AttentionMetadata:
    cu_query_lens: torch.Tensor  # [B+1] offsets of each sequence's new tokens in the packed batch
    context_lens: torch.Tensor  # [B] tokens in the cache after this step (cached before + new)
    block_tables: torch.Tensor  # [B, max_blocks] physical block ids, padded (padding value unused)
    slot_mapping: torch.Tensor  # [T] block_id * block_size + offset of each new token
    block_size: int = 64
    # Optional host-side maxima; computed (one device sync) when not given.
    max_query_len: int | None = None
    max_context_len: int | None = None
    # Index tensors derived once per step and shared by every layer.
    _derived: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(
        cls,
        seqs: Sequence[tuple[Sequence[int], int, int]],
        block_size: int = 64,
        device: torch.device | str = "cpu",
    ) -> "AttentionMetadata":
        """seqs: (block_table, num_cached, num_new) per sequence, in packed order."""
        cu, ctx, slots = [0], [], []
        for table, cached, new in seqs:
            total = cached + new
            if new < 1:
                raise ValueError("every sequence in a step needs at least one new token")
            if len(table) * block_size < total:
                raise ValueError(f"block table of {len(table)} blocks cannot hold {total} tokens")
            cu.append(cu[-1] + new)
            ctx.append(total)
            slots.extend(table[p // block_size] * block_size + p % block_size for p in range(cached, total))
        width = max(len(t) for t, _, _ in seqs)
        tables = [list(t) + [0] * (width - len(t)) for t, _, _ in seqs]
        as_long = dict(dtype=torch.long, device=device)
        return cls(
            cu_query_lens=torch.tensor(cu, **as_long),
            context_lens=torch.tensor(ctx, **as_long),
            block_tables=torch.tensor(tables, **as_long),
            slot_mapping=torch.tensor(slots, **as_long),
            block_size=block_size,
            max_query_len=max(n for _, _, n in seqs),
            max_context_len=max(ctx),
        )

    # ---- derived views -----------------------------------------------------------------------
    @property
    def num_seqs(self) -> int:
        return self.context_lens.shape[0]

    @property
    def num_tokens(self) -> int:
        return self.slot_mapping.shape[0]

    @property
    def is_decode(self) -> bool:
        """Every sequence has exactly one new token (each has at least one, so T == B suffices)."""
        return self.num_tokens == self.num_seqs

    def _max_context(self) -> int:
        if self.max_context_len is None:
            self.max_context_len = int(self.context_lens.max().item())
        return self.max_context_len

    def _max_query(self) -> int:
        if self.max_query_len is None:
            lens = self.cu_query_lens[1:] - self.cu_query_lens[:-1]
            self.max_query_len = int(lens.max().item())
        return self.max_query_len

    def context_slots(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(slots [B, L], valid [B, L]): the cache slot of every context position of every sequence.

        Positions past a sequence's context point at a valid slot of its own table (masked later)."""
        if "context_slots" not in self._derived:
            length = self._max_context()
            block_index, offset, pos = _position_split(
                length, self.block_size, self.block_tables.shape[1], self.context_lens.device)
            blocks = self.block_tables.index_select(1, block_index)  # [B, L]
            if self.num_seqs == 1:  # L is exactly its context: nothing is padding
                valid = torch.ones(1, length, dtype=torch.bool, device=blocks.device)
            else:
                valid = pos[None, :] < self.context_lens[:, None]
                blocks = torch.where(valid, blocks, self.block_tables[:, :1])
            slots = blocks * self.block_size + offset[None, :]
            self._derived["context_slots"] = (slots, valid)
        return self._derived["context_slots"]

    def decode_bias(self, dtype: torch.dtype) -> torch.Tensor | None:
        """[B, 1, L] additive score bias for the absorbed form: 0 for context positions, -inf for padding.
        None for a single sequence, whose L is exactly its context (nothing to mask)."""
        if self.num_seqs == 1:
            return None
        key = ("decode_bias", dtype)
        if key not in self._derived:
            _, valid = self.context_slots()
            bias = torch.full(valid.shape, float("-inf"), dtype=dtype, device=valid.device).masked_fill_(valid, 0.0)
            self._derived[key] = bias[:, None, :]
        return self._derived[key]

    @property
    def uniform_queries(self) -> bool:
        """Every sequence has max_query_len new tokens: the packed batch is already [B, Q] without padding."""
        return self.num_tokens == self.num_seqs * self._max_query()

    @property
    def fresh_prefill(self) -> bool:
        """Uniform queries and nothing cached before: plain causal attention, no mask needed."""
        return self.uniform_queries and self._max_context() == self._max_query()

    def prefill_layout(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(padded_index [T], mask [B, 1, Q, L], Q) for the expanded (prefill) form.

        Token i goes to row padded_index[i] of a [B*Q] padded query batch. mask[b, 0, s, t] is True where
        query s of sequence b may attend context position t (causal, offset by the cached prefix).
        Padding query rows may attend position 0 only, so their softmax stays finite."""
        if "prefill_layout" not in self._derived:
            _, valid = self.context_slots()
            q_max = self._max_query()
            device = self.context_lens.device
            q_lens = self.cu_query_lens[1:] - self.cu_query_lens[:-1]
            seq_of_token = torch.repeat_interleave(
                torch.arange(self.num_seqs, device=device), q_lens, output_size=self.num_tokens
            )
            offset = torch.arange(self.num_tokens, device=device) - self.cu_query_lens[seq_of_token]
            padded_index = seq_of_token * q_max + offset

            s = torch.arange(q_max, device=device)
            t = torch.arange(valid.shape[1], device=device)
            last_visible = (self.context_lens - q_lens)[:, None] + s[None, :]  # [B, Q]
            is_query = s[None, :] < q_lens[:, None]
            mask = t[None, None, :] <= last_visible[:, :, None]
            mask = torch.where(is_query[:, :, None], mask, t[None, None, :] == 0)
            self._derived["prefill_layout"] = (padded_index, mask[:, None], q_max)
        return self._derived["prefill_layout"]


_SPLITS: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def _position_split(length: int, block_size: int, table_width: int, device) -> tuple[torch.Tensor, ...]:
    """(block index [L] (clamped to the table), offset in the block [L], position [L]) of positions
    0..L-1; made once per shape, as every step would otherwise rebuild them."""
    key = (length, block_size, table_width, str(device))
    split = _SPLITS.get(key)
    if split is None:
        if len(_SPLITS) > 4096:  # bounded: lengths grow by one per decode step
            _SPLITS.clear()
        pos = torch.arange(length, device=device)
        split = _SPLITS[key] = ((pos // block_size).clamp(max=table_width - 1), pos % block_size, pos)
    return split
