"""What rank 0 tells the other ranks, so that they run the same model steps in the same order.

Rank 0 owns the scheduler. Before each step its ModelRunner hands the scheduled batch to a
StepBroadcaster, which sends the little a follower's runner reads of it (the new tokens, positions,
block tables, which rows sample) over the gloo control group; the follower rebuilds an equivalent batch
and calls its own runner.run on it, so both take the same path (decode buffers or eager prefill) and
meet in the same collectives. Disk-tier blocks written into rank 0's cache are sent too: every rank
holds the whole latent cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from gpu_worker.engine.scheduler import ScheduledSeq

STEP, WRITE_BLOCK, STOP = "step", "write_block", "stop"


class TokenWindow(list):
    """token_ids[start:end] of a sequence, indexed as the whole list would be."""

    def __init__(self, start: int, tokens: list[int]):
        super().__init__(tokens)
        self.start = start

    def __getitem__(self, i):
        if isinstance(i, slice):
            return list.__getitem__(self, slice(i.start - self.start, i.stop - self.start))
        return list.__getitem__(self, i - self.start)


@dataclass
class SequenceView:
    """The parts of a Sequence a runner reads during one step."""
    token_ids: TokenWindow
    num_computed_tokens: int
    block_table: list[int]
    length: int
    table_key: tuple[int, int]  # rank 0's Sequence.table_key: the decode buffers refill a row when it changes

    def __len__(self) -> int:
        return self.length


def describe(batch: list[ScheduledSeq]) -> list[tuple]:
    out = []
    for s in batch:
        seq, start = s.seq, s.seq.num_computed_tokens
        out.append((start, seq.token_ids[start : start + s.num_new_tokens], list(seq.block_table), len(seq), seq.table_key))
    return out


def rebuild(description: list[tuple]) -> list[ScheduledSeq]:
    return [ScheduledSeq(SequenceView(TokenWindow(start, tokens), start, table, length, key), len(tokens))
            for start, tokens, table, length, key in description]


class StepBroadcaster:
    """Rank 0's side: set as ModelRunner.step_listener."""

    def __init__(self, control: dist.ProcessGroup):
        self.control = control

    def _send(self, message: tuple) -> None:
        dist.broadcast_object_list([message], src=0, group=self.control)

    def step(self, batch: list[ScheduledSeq]) -> None:
        self._send((STEP, describe(batch)))

    def write_block(self, block_id: int, latents: torch.Tensor) -> None:
        self._send((WRITE_BLOCK, block_id, latents.to("cpu")))

    def stop(self) -> None:
        self._send((STOP,))


def receive(control: dist.ProcessGroup) -> tuple:
    box = [None]
    dist.broadcast_object_list(box, src=0, group=control)
    return box[0]


def follow(runner, control: dist.ProcessGroup, on_step=lambda: None) -> None:
    """A follower rank's loop: replay rank 0's steps on `runner` until told to stop."""
    while True:
        message = receive(control)
        if message[0] == STEP:
            runner.run(rebuild(message[1]))
            on_step()
        elif message[0] == WRITE_BLOCK:
            runner.write_block(message[1], message[2])
        else:
            return
