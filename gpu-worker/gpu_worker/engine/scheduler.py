"""Continuous batching: a step packs one token per decoding sequence, then prefill chunks, up to a
token budget. When a running sequence cannot grow, the newest is preempted: its blocks released
(full ones stay cached), it goes back to the front of the queue.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from .block_manager import BlockManager
from .sequence import Sequence


class Chunk(NamedTuple):
    """One scheduled sequence's new tokens from `start` on: all a follower rank gets of a step."""
    start: int
    tokens: list[int]
    block_table: list[int]
    samples: bool               # it ends at the sequence's last token: it yields logits
    table_key: tuple[int, int]  # Sequence.table_key: decode buffers refill a row when it changes


@dataclass
class ScheduledSeq:
    seq: Sequence
    num_new_tokens: int

    @property
    def samples(self) -> bool:
        """Whether this step reaches the sequence's last token, so it yields logits."""
        return self.seq.num_computed_tokens + self.num_new_tokens == len(self.seq)

    def chunk(self) -> Chunk:
        seq, start = self.seq, self.seq.num_computed_tokens
        tokens = seq.token_ids[start:start + self.num_new_tokens]
        return Chunk(start, tokens, seq.block_table, self.samples, seq.table_key)


class Scheduler:
    def __init__(self, block_manager: BlockManager, max_batch_tokens: int = 2048, max_num_seqs: int = 256):
        self.block_manager = block_manager
        self.max_batch_tokens = max_batch_tokens
        self.max_num_seqs = max_num_seqs
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def remove(self, seq: Sequence) -> None:
        """Take seq out of the queues and release its blocks at once."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self.block_manager.free(seq)

    def schedule(self) -> list[ScheduledSeq]:
        bm = self.block_manager
        budget = self.max_batch_tokens
        batch: list[ScheduledSeq] = []
        preempted = False
        for seq in list(self.running):
            if seq not in self.running:  # preempted below to make room for an earlier one
                continue
            num_new = min(len(seq) - seq.num_computed_tokens, budget)
            if num_new <= 0:
                continue
            while not bm.ensure_capacity(seq, seq.num_computed_tokens + num_new):
                victim = self.running[-1]
                self.remove(victim)
                victim.num_preemptions += 1
                self.waiting.appendleft(victim)
                preempted = True
                if victim is seq:
                    break
            if seq in self.running:
                batch.append(ScheduledSeq(seq, num_new))
                budget -= num_new

        while self.waiting and not preempted and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            match = bm.match_prefix(seq)
            hit_blocks = len(match.device_blocks) + len(match.disk_keys)
            num_new = min(len(seq) - hit_blocks * bm.block_size, budget)
            new_blocks = bm.blocks_for(hit_blocks * bm.block_size + num_new) - hit_blocks
            if not bm.can_allocate(match, new_blocks):
                break
            self.waiting.popleft()
            reused = bm.allocate_prefix(seq, match)
            if seq.num_cached_prompt_tokens is None:
                seq.num_cached_prompt_tokens = reused
            num_new = min(len(seq) - reused, budget)  # a disk block may have gone missing
            if not bm.ensure_capacity(seq, reused + num_new):
                bm.free(seq)
                self.waiting.appendleft(seq)
                break
            self.running.append(seq)
            batch.append(ScheduledSeq(seq, num_new))
            budget -= num_new
        # Decodes first, then prefill chunks: the attention splits a mixed step at one offset.
        batch.sort(key=lambda s: s.num_new_tokens > 1)
        return batch
