"""Engine benchmark on the embedded model (CPU by default; runs anywhere the model does).

    python bench/bench_engine.py [--checkpoint DIR] [--device cpu] [--threads 2]

Reports output tokens/s at concurrency 1, 8 and 32, and the time to first token of a
4096-token prompt cold, on a device prefix-cache hit and on a disk-tier hit.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gpu_worker.engine.config import EngineConfig  # noqa: E402
from gpu_worker.engine.engine import LLMEngine  # noqa: E402
from gpu_worker.engine.sequence import SamplingParams  # noqa: E402
from gpu_worker.model.loader import load_model  # noqa: E402


def random_prompt(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(3, 128000) for _ in range(n)]


def throughput(engine: LLMEngine, concurrency: int, prompt_len: int, output_len: int, rng: random.Random) -> dict:
    prompts = [random_prompt(rng, prompt_len) for _ in range(concurrency)]
    params = [SamplingParams(temperature=0.6, max_tokens=output_len, ignore_eos=True, seed=i)
              for i in range(concurrency)]
    start, cpu_start = time.perf_counter(), time.process_time()
    seqs = engine.generate(prompts, params, namespace=f"bench-{concurrency}-{rng.random()}")
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    out = sum(s.num_output_tokens for s in seqs)
    # CPU seconds too: on a shared machine wall time measures the neighbours as well.
    return {"concurrency": concurrency, "output_tokens": out, "seconds": round(elapsed, 3),
            "cpu_seconds": round(cpu, 3), "output_tokens_per_s": round(out / elapsed, 1)}


def time_to_first_token(engine: LLMEngine, prompt: list[int], namespace: str) -> tuple[float, int]:
    start = time.perf_counter()
    seq = engine.add_request(f"ttft-{time.perf_counter_ns()}", prompt, SamplingParams(temperature=0, max_tokens=1),
                             namespace)
    while seq.num_output_tokens == 0:
        engine.step()
    return time.perf_counter() - start, seq.num_cached_prompt_tokens


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=None, help="default: build the embedded model in a temp dir")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, choices=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--ttft-prompt-len", type=int, default=4096)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if args.device.startswith("cuda") else torch.float32)
    tmp = tempfile.TemporaryDirectory()
    checkpoint = args.checkpoint
    if checkpoint is None:
        from gpu_worker.model.make_checkpoint import DEFAULT_TOKENIZER_DIR, make_checkpoint
        checkpoint = make_checkpoint(os.path.join(tmp.name, "ckpt"), seed=0, tokenizer_dir=DEFAULT_TOKENIZER_DIR,
                                     require_tokenizer=False)
    model = load_model(checkpoint, device=args.device, dtype=dtype)
    config = EngineConfig(num_cache_blocks=512, max_batch_tokens=2048,
                          disk_cache_dir=os.path.join(tmp.name, "disk"), disk_cache_max_bytes=1 << 30)
    engine = LLMEngine(model, config, device=args.device)
    rng = random.Random(0)
    results = {"device": args.device, "dtype": str(dtype), "threads": args.threads, "throughput": [], "ttft": {}}

    throughput(engine, 2, 32, 8, rng)  # warm-up
    for c in (1, 8, 32):
        r = throughput(engine, c, args.prompt_len, args.output_len, rng)
        results["throughput"].append(r)
        if not args.json:
            print(f"concurrency {c:>2}: {r['output_tokens_per_s']:>8.1f} output tokens/s "
                  f"({r['output_tokens']} tokens in {r['seconds']} s wall, {r['cpu_seconds']} s CPU; "
                  f"prompts of {args.prompt_len} tokens)", flush=True)

    prompt = random_prompt(rng, args.ttft_prompt_len)
    time_to_first_token(engine, random_prompt(rng, 256), "warm-up")
    cold, cold_hit = time_to_first_token(engine, prompt, "ttft")
    hit, hit_tokens = time_to_first_token(engine, prompt, "ttft")
    engine.block_manager.spill_all()
    engine.block_manager.reset_prefix_cache()  # now only the disk tier holds the prefix
    disk, disk_tokens = time_to_first_token(engine, prompt, "ttft")
    results["ttft"] = {"prompt_tokens": len(prompt), "cold_s": round(cold, 4), "hit_s": round(hit, 4),
                       "hit_cached_tokens": hit_tokens, "hit_over_cold": round(hit / cold, 4),
                       "disk_hit_s": round(disk, 4), "disk_cached_tokens": disk_tokens,
                       "disk_hit_over_cold": round(disk / cold, 4)}
    assert cold_hit == 0
    if args.json:
        print(json.dumps(results))
    else:
        t = results["ttft"]
        print(f"TTFT {len(prompt)}-token prompt: cold {t['cold_s'] * 1000:.1f} ms, "
              f"device cache hit {t['hit_s'] * 1000:.1f} ms ({t['hit_cached_tokens']} tokens reused, "
              f"{t['hit_over_cold']:.1%} of cold; target <= 25%), "
              f"disk-tier hit {t['disk_hit_s'] * 1000:.1f} ms ({t['disk_hit_over_cold']:.1%} of cold)")
    engine.disk.flush()
    tmp.cleanup()


if __name__ == "__main__":
    main()
