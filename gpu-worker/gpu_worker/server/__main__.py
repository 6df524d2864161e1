"""python -m gpu_worker.server --checkpoint DIR --port N ...

SIGTERM (or Ctrl-C) drains: new requests get 503, running ones finish, the prefix cache is spilled
to the disk tier, then the process exits.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

import torch
import uvicorn

from gpu_worker.parallel.launcher import start_followers
from gpu_worker.parallel.process_group import free_port, init_rank

from .app import build_app
from .config import DTYPES, engine_config, keep_fp8, parse_args
from .worker import build_state


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state, banner: str):
        super().__init__(config)
        self.worker_state, self.banner = state, banner

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started:
            print(self.banner, flush=True)

    def handle_exit(self, sig, frame) -> None:
        self.worker_state.draining = True
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets=None) -> None:
        await super().shutdown(sockets)  # returns once running requests have finished
        # uvicorn re-raises the signal after run() returns, so the engine is stopped here: the
        # prefix cache is spilled to the disk tier for the next worker.
        state = self.worker_state
        state.draining = True
        state.engine.shutdown()
        if state.ranks is not None and state.ranks.failure is None:
            state.engine.engine.runner.step_listener.stop()  # the follower ranks exit
            state.ranks.stop()
        logging.getLogger("gpu_worker.server").info("engine stopped; prefix cache kept on disk")


def exit_with_parent(parent_pid: int) -> None:
    """SIGTERM to ourselves once parent_pid is no longer our parent (it died, even by SIGKILL)."""
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.parent_pid:
        exit_with_parent(args.parent_pid)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("gpu_worker.server")
    if args.threads:
        torch.set_num_threads(args.threads)
    ranks = control = None
    if args.tensor_parallel_size > 1:
        port = free_port()
        ranks = start_followers(args, port)
        _, control = init_rank(0, args.tensor_parallel_size, port, args.device,
                               args.enable_expert_parallel, args.collective_timeout)
        log.info("rank 0 of %d joined (%s)", args.tensor_parallel_size,
                 "expert parallel" if args.enable_expert_parallel else "tensor parallel")
    if not args.secret:
        log.warning("no --secret / GPU_WORKER_SECRET: requests are not authenticated")
    state = build_state(args.checkpoint, engine_config(args, ""), args.served_models, args.secret,
                        device=args.device, dtype=DTYPES[args.dtype], ranks=ranks, control=control,
                        max_reasoning_tokens=args.max_reasoning_tokens,
                        kernel_backend=args.kernel_backend, keep_fp8=keep_fp8(args))
    log.info("engine ready: %d cache blocks of 64 tokens, models %s",
             state.engine.stats()["total_cache_blocks"], args.served_models)
    config = uvicorn.Config(build_app(state), host=args.host, port=args.port, lifespan="off",
                            log_level=args.log_level, timeout_graceful_shutdown=None)
    banner = (f"gpu-worker listening on http://{args.host}:{args.port} "
              f"(models: {', '.join(args.served_models)}; device: {args.device})")
    DrainingServer(config, state, banner).run()
    sys.exit(0)


if __name__ == "__main__":
    main()
