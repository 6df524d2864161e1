"""Rank 0 spawns the other ranks and watches their reports (about once a second): one that exits
or falls silent makes the worker unhealthy (/health 503) instead of leaving it on a collective.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
import time
from argparse import Namespace

import torch
import torch.distributed as dist

from gpu_worker.engine.config import EngineConfig
from gpu_worker.engine.engine import cache_blocks

HEARTBEAT_S = 1.0
# A ready follower reports every second even mid-step (its reporter is a thread); while it loads its
# weights (minutes for a 671B checkpoint) reading may hold the interpreter, so silence counts only once ready.
SILENCE_LIMIT_S = 60.0


class Ranks:
    """Rank 0's view of every rank: its own, and the followers' latest reports."""

    def __init__(self, processes: dict[int, mp.Process], reports: mp.Queue):
        self.processes, self.reports = processes, reports
        self.latest: dict[int, dict] = {}  # rank -> its last report
        self.seen: dict[int, float] = {}   # rank -> when that came
        self.lost: dict[int, str] = {}     # rank -> why it is gone
        self._lock = threading.Lock()
        threading.Thread(target=self._watch, name="rank-watch", daemon=True).start()

    def _watch(self) -> None:
        while True:
            try:
                report = self.reports.get(timeout=0.25)
            except queue.Empty:
                report = None
            except (EOFError, OSError):
                return
            now = time.monotonic()
            with self._lock:
                if report is not None:
                    self.latest[report["rank"]], self.seen[report["rank"]] = report, now
                for rank, process in self.processes.items():
                    silent = now - self.seen.get(rank, now)
                    if rank in self.lost:
                        continue
                    if not process.is_alive():
                        self.lost[rank] = f"rank {rank} exited with code {process.exitcode}"
                    elif silent > SILENCE_LIMIT_S and self.latest[rank]["state"] == "ready":
                        self.lost[rank] = f"rank {rank} silent for {silent:.0f} s"

    @property
    def failure(self) -> str | None:
        with self._lock:
            return "; ".join(self.lost[r] for r in sorted(self.lost)) or None

    def snapshot(self, leader: dict) -> list[dict]:
        """Every rank's state, rank 0 (`leader`, reported by the caller) first."""
        out = [dict(leader, rank=0, alive=True)]
        now = time.monotonic()
        with self._lock:
            for rank, process in sorted(self.processes.items()):
                since = round(now - self.seen[rank], 1) if rank in self.seen else None
                report = self.latest.get(rank, {"state": "starting"})
                out.append(dict(report, rank=rank, pid=process.pid, alive=rank not in self.lost,
                                seconds_since_report=since))
        return out

    def stop(self, timeout_s: float = 10.0) -> None:
        for process in self.processes.values():
            process.join(timeout_s)
            if process.is_alive():
                process.terminate()


def start_followers(args: Namespace, port: int) -> Ranks:
    """Spawn ranks 1..N-1 of `python -m gpu_worker.server` with these arguments."""
    from .follower import run_follower  # the spawned processes import it themselves

    context = mp.get_context("spawn")
    reports = context.Queue()
    processes = {}
    for rank in range(1, args.tensor_parallel_size):
        processes[rank] = context.Process(
            target=run_follower, args=(rank, vars(args), port, reports, os.getpid()),
            name=f"gpu-worker-rank-{rank}", daemon=True)
        processes[rank].start()
    return Ranks(processes, reports)


def agree_on_cache_blocks(model, config: EngineConfig, device, control) -> int:
    """Every rank sizes its cache as the engine would (a profiled step on CUDA, run by all ranks
    together) and all take the smallest, so that rank 0's block ids exist everywhere."""
    blocks = torch.tensor([cache_blocks(model, config, torch.device(device))])
    dist.all_reduce(blocks, op=dist.ReduceOp.MIN, group=control)
    return int(blocks.item())
