"""The engine thread's time per step outside the model, with HTTP streams and with the engine alone.

    python bench/bench_engine_loop.py --checkpoint DIR [--device cpu] [--streams 1,64] [--tokens N]

Streaming clients in another process make the server's event loop (sharing the interpreter with the
engine thread) detokenise, match a stop string and encode SSE; the engine alone is the baseline.
"""
import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import httpx
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gpu_worker.engine.config import EngineConfig  # noqa: E402
from gpu_worker.engine.sequence import SamplingParams  # noqa: E402
from gpu_worker.server.local_server import LocalServer  # noqa: E402
from gpu_worker.server.worker import build_state  # noqa: E402

PROMPT = "Write a long story about the sea."


def stream_clients(url: str, streams: int, tokens: int) -> int:
    """The SSE chunks that streams concurrent streaming requests receive."""
    body = {"model": "deepseek-chat", "stream": True, "max_tokens": tokens, "temperature": 0.8,
            "stop": ["\u2603never\u2603"], "messages": [{"role": "user", "content": PROMPT}]}

    def one(seed: int) -> int:
        request = dict(json=dict(body, seed=seed), timeout=600)
        with httpx.stream("POST", f"{url}/v1/chat/completions", **request) as response:
            return sum(line.startswith("data: ") for line in response.iter_lines())

    with ThreadPoolExecutor(streams) as pool:
        return sum(pool.map(one, range(streams)))


def timed(spans: dict, name: str, fn):
    """fn, appending each call's (start, end) in ms to spans[name]."""
    def call(*args):
        start = time.perf_counter()
        out = fn(*args)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        spans[name].append((start * 1000, time.perf_counter() * 1000))
        return out
    return call


def main(args) -> None:
    streams = [int(s) for s in args.streams.split(",")]
    config = EngineConfig(num_cache_blocks=max(64, 2 * max(streams)), max_batch_tokens=4096,
                          max_num_seqs=max(streams), max_model_len=1024)
    dtype = torch.float32 if args.device == "cpu" else torch.bfloat16
    state = build_state(args.checkpoint, config, ["deepseek-chat"], device=args.device, dtype=dtype)
    engine, spans = state.engine.engine, {"step": [], "run": [], "sampler": []}
    for owner, name in ((engine, "step"), (engine.runner, "run"), (engine, "sampler")):
        setattr(owner, name, timed(spans, name, getattr(owner, name)))
    server = LocalServer(state)
    prompt = state.renderer.tokenizer.encode(PROMPT).ids

    def http_streams(n: int) -> int:
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as clients:
            return clients.submit(stream_clients, server.url, n, args.tokens).result()

    def engine_alone(n: int) -> int:  # the engine thread is idle now: drive the engine from here
        params = [SamplingParams(temperature=0.8, max_tokens=args.tokens, ignore_eos=True, seed=s)
                  for s in range(n)]
        engine.generate([prompt] * n, params, namespace=f"alone-{n}")
        return 0

    try:
        for i, n in enumerate([1, *streams]):  # the first run warms up
            for path in (http_streams, engine_alone):
                spans.update({name: [] for name in spans})
                chunks = path(n)
                model, sampler = ([b - a for a, b in spans[k]] for k in ("run", "sampler"))
                starts = [start for start, _ in spans["step"]]
                # an iteration: from one step's start to the next's, less the model's time
                outside = [b - a - m for a, b, m in zip(starts, starts[1:], model)]
                medians = {f"{k}_ms": round(statistics.median(v), 3) for k, v in
                           (("model", model), ("outside_model", outside), ("sampler", sampler))}
                if i:  # one JSON line per measured run
                    print(json.dumps({"path": path.__name__, "streams": n, "sse_chunks": chunks,
                                      "steps": len(outside), **medians}))
    finally:
        server.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="e.g. .data/checkpoints/embedded")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--streams", default="1,64", help="comma-separated concurrent stream counts")
    ap.add_argument("--tokens", type=int, default=48, help="output tokens per stream")
    torch.set_num_threads(1)
    main(ap.parse_args())
