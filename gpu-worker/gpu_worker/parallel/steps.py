"""Rank 0 broadcasts each step's chunks (and disk-tier blocks it loads: every rank holds the whole
latent cache) over the gloo control group; followers run the same steps, meeting rank 0 in the same
collectives.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

STEP, WRITE_BLOCK, STOP = "step", "write_block", "stop"


class StepBroadcaster:
    """Rank 0's side: set as ModelRunner.step_listener."""

    def __init__(self, control: dist.ProcessGroup):
        self.control = control

    def _send(self, *message) -> None:
        dist.broadcast_object_list([message], src=0, group=self.control)

    def step(self, chunks: list) -> None:
        self._send(STEP, chunks)

    def write_block(self, block_id: int, latents: torch.Tensor) -> None:
        self._send(WRITE_BLOCK, block_id, latents.to("cpu"))

    def stop(self) -> None:
        self._send(STOP)


def follow(runner, control: dist.ProcessGroup, progress: dict) -> None:
    """A follower rank's loop: replay rank 0's steps on `runner` (counted in progress["steps"])
    until told to stop."""
    while True:
        box = [None]
        dist.broadcast_object_list(box, src=0, group=control)
        kind, *args = box[0]
        if kind == STEP:
            runner.run(*args)
            progress["steps"] += 1
        elif kind == WRITE_BLOCK:
            runner.write_block(*args)
        else:
            return
