"""Joining the ranks of one worker: the model's process group (NCCL on CUDA, gloo on CPU) and a gloo group
for the step messages rank 0 sends (small host objects, which NCCL cannot carry without a device copy)."""

from __future__ import annotations

import datetime
import socket

import torch
import torch.distributed as dist

from .state import Parallel, set_current


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_rank(rank: int, size: int, port: int, device: str = "cpu", expert_parallel: bool = False,
              timeout_s: float = 120.0) -> tuple[Parallel, dist.ProcessGroup]:
    """Join the worker's ranks on 127.0.0.1:port -> (Parallel, control group). A collective that
    waits longer than timeout_s fails instead of hanging."""
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(rank)
    timeout = datetime.timedelta(seconds=timeout_s)
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=size, timeout=timeout,
                            device_id=torch.device("cuda", rank) if cuda else None)
    control = dist.new_group(backend="gloo", timeout=timeout) if cuda else dist.group.WORLD
    parallel = Parallel(rank=rank, size=size, expert_parallel=expert_parallel, group=dist.group.WORLD)
    set_current(parallel)
    return parallel, control
