"""Run a function on N gloo ranks (CPU processes), as the worker's ranks would, and collect what each returns."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gpu_worker.parallel.process_group import free_port, init_rank


def _entry(rank, size, port, expert_parallel, fn, args, out_dir):
    torch.set_num_threads(1)
    init_rank(rank, size, port, expert_parallel=expert_parallel, timeout_s=60)
    torch.save(fn(*args), f"{out_dir}/rank{rank}.pt")
    dist.barrier()
    # Leave without tearing the process group down: a rank whose peers already exited can abort
    # (SIGABRT) in gloo's teardown, failing a run whose results are all written.
    os._exit(0)


def run_ranks(size: int, out_dir, fn, *args, expert_parallel: bool = False) -> list:
    mp.spawn(_entry, args=(size, free_port(), expert_parallel, fn, args, str(out_dir)), nprocs=size, join=True)
    return [torch.load(f"{out_dir}/rank{r}.pt") for r in range(size)]
