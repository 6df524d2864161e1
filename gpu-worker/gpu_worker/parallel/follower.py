"""A follower rank: load this rank's part of the model, build the same runner as rank 0, replay its
steps."""

from __future__ import annotations

import logging
import os
import threading
import time
from argparse import Namespace

import torch

from gpu_worker.engine.engine import build_runner
from gpu_worker.model.loader import load_model

from .launcher import HEARTBEAT_S, agree_on_cache_blocks
from .process_group import init_rank
from .steps import follow


def run_follower(rank: int, arguments: dict, port: int, reports, parent_pid: int) -> None:
    from gpu_worker.server.config import DTYPES, engine_config, keep_fp8

    args = Namespace(**arguments)
    logging.basicConfig(level=args.log_level.upper(),
                        format=f"%(asctime)s %(levelname)s rank {rank} %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = f"cuda:{rank}" if torch.device(args.device).type == "cuda" else "cpu"
    progress = {"state": "loading", "steps": 0}

    def report_while_parent_lives() -> None:  # every second to rank 0; exit when rank 0 is gone
        while os.getppid() == parent_pid:
            report = {"rank": rank, **progress, "device": device, "pid": os.getpid()}
            if torch.device(device).type == "cuda":
                report["memory_allocated_bytes"] = torch.cuda.memory_allocated(device)
            reports.put(report)
            time.sleep(HEARTBEAT_S)
        os._exit(1)
    threading.Thread(target=report_while_parent_lives, name="rank-report", daemon=True).start()

    _, control = init_rank(rank, args.tensor_parallel_size, port, args.device,
                           args.enable_expert_parallel, args.collective_timeout)
    model = load_model(args.checkpoint, device=device, dtype=DTYPES[args.dtype],
                       kernel_backend=args.kernel_backend, keep_fp8=keep_fp8(args))
    config = engine_config(args, "")  # rank 0's settings; only rank 0 uses the disk tier
    blocks = agree_on_cache_blocks(model, config, device, control)
    runner = build_runner(model, config, torch.device(device), blocks)
    progress["state"] = "ready"
    follow(runner, control, progress)
    # rank 0 is shutting down: leave without tearing the process group down under it (gloo can abort)
    os._exit(0)
