"""The engine loop's time outside the model per step, with one stream and with many concurrent ones.

    python bench/bench_engine_loop.py [--checkpoint DIR] [--streams 1,64] [--tokens 48] [--json]

Clients in another process stream chat completions with a stop string from the worker on a local
socket, so detokenisation, stop strings, parsing and SSE encoding run (on the server's event loop, which
shares the interpreter with the engine thread); the same batch sizes through the engine alone are the
baseline. Per step: the model's time (forward + logits) and the rest of the iteration, medians.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gpu_worker.engine.config import EngineConfig  # noqa: E402
from gpu_worker.engine.sequence import SamplingParams  # noqa: E402


def _stream_clients(url: str, streams: int, tokens: int, result) -> None:
    import httpx

    body = {"model": "deepseek-chat", "stream": True, "max_tokens": tokens, "temperature": 0.8, "seed": 1,
            "stop": ["\u2603never\u2603"], "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Write a long story about the sea."}]}

    async def one(client: httpx.AsyncClient, i: int) -> int:
        chunks = 0
        async with client.stream("POST", f"{url}/v1/chat/completions", json=dict(body, seed=i)) as r:
            async for line in r.aiter_lines():
                chunks += line.startswith("data: ")
        return chunks

    async def main() -> list[int]:
        async with httpx.AsyncClient(timeout=600) as client:
            return await asyncio.gather(*(one(client, i) for i in range(streams)))

    result.put(sum(asyncio.run(main())))


class StepTimer:
    """Wraps the engine's step and the runner's forward to time each."""

    def __init__(self, engine):
        self.starts: list[float] = []
        self.model: list[float] = []
        self.batch: list[int] = []
        self.sampling: list[float] = []
        step, run, sampler = engine.step, engine.runner.run, engine.sampler

        def timed_sampler(logits, batch):
            t = time.perf_counter()
            out = sampler(logits, batch)
            self.sampling.append(time.perf_counter() - t)
            return out

        def timed_run(batch):
            t = time.perf_counter()
            out = run(batch)
            if out is not None and out.is_cuda:
                torch.cuda.synchronize()
            self.model.append(time.perf_counter() - t)
            self.batch.append(len(batch))
            return out

        def timed_step():
            self.starts.append(time.perf_counter())
            return step()

        engine.step, engine.runner.run, engine.sampler = timed_step, timed_run, timed_sampler

    def reset(self) -> None:
        self.starts.clear(), self.model.clear(), self.batch.clear(), self.sampling.clear()

    def summary(self) -> dict:
        # iteration i: from step i's start to step i+1's; the last step has no end and is dropped
        n = min(len(self.starts) - 1, len(self.model))
        iters = [self.starts[i + 1] - self.starts[i] for i in range(n)]
        outside = [it - m for it, m in zip(iters, self.model[:n])]
        ms = lambda xs: round(statistics.median(xs) * 1000, 3) if xs else None
        return {"steps": n, "median_batch": statistics.median(self.batch[:n]) if n else 0,
                "model_ms": ms(self.model[:n]), "outside_model_ms": ms(outside), "sampler_ms": ms(self.sampling),
                "outside_share": round(statistics.median(o / it for o, it in zip(outside, iters)), 4) if n else None}


def run(checkpoint: str | None, streams: list[int], tokens: int, device: str) -> dict:
    from gpu_worker.server.local_server import LocalServer
    from gpu_worker.server.worker import build_state
    tmp = tempfile.TemporaryDirectory()
    if checkpoint is None:
        from gpu_worker.model.make_checkpoint import DEFAULT_TOKENIZER_DIR, make_checkpoint
        checkpoint = make_checkpoint(os.path.join(tmp.name, "ckpt"), seed=0, tokenizer_dir=DEFAULT_TOKENIZER_DIR)
    config = EngineConfig(num_cache_blocks=max(64, 2 * max(streams)), max_batch_tokens=4096,
                          max_num_seqs=max(streams), max_model_len=1024)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    state = build_state(checkpoint, config, ["deepseek-chat"], device=device, dtype=dtype)
    timer = StepTimer(state.engine.engine)
    server = LocalServer(state)
    url = server.url
    ctx = mp.get_context("spawn")
    results = {"device": device, "tokens_per_stream": tokens, "runs": []}
    engine = state.engine.engine
    prompt = state.renderer.tokenizer.encode("Write a long story about the sea.").ids
    try:
        for n in [1] + streams:  # the first run warms up
            timer.reset()
            queue = ctx.Queue()
            client = ctx.Process(target=_stream_clients, args=(url, n, tokens, queue))
            client.start()
            chunks = queue.get(timeout=1200)
            client.join()
            results["runs"].append({"path": "http streams", "streams": n, "sse_chunks": chunks, **timer.summary()})
            # the engine thread is idle now (nothing submitted), so the engine can be driven from here
            timer.reset()
            params = [SamplingParams(temperature=0.8, max_tokens=tokens, ignore_eos=True, seed=i) for i in range(n)]
            engine.generate([prompt] * n, params, namespace=f"alone-{n}")
            results["runs"].append({"path": "engine alone", "streams": n, "sse_chunks": 0, **timer.summary()})
        del results["runs"][:2]
    finally:
        server.stop()
        tmp.cleanup()
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=None, help="default: the embedded model, built in a temp dir")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--streams", default="1,64", help="comma-separated concurrent stream counts")
    ap.add_argument("--tokens", type=int, default=48, help="output tokens per stream")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = run(args.checkpoint, [int(s) for s in args.streams.split(",")], args.tokens, args.device)
    if args.json:
        print(json.dumps(results))
        return
    print("| path | streams | steps | median batch | model ms/step | outside model ms/step | of which sampler ms "
          "| outside share |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results["runs"]:
        print(f"| {r['path']} | {r['streams']} | {r['steps']} | {r['median_batch']} | {r['model_ms']} | {r['outside_model_ms']} "
              f"| {r['sampler_ms']} | {r['outside_share']:.1%} |")


if __name__ == "__main__":
    main()
