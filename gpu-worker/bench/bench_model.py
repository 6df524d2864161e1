"""Prefill and decode throughput of our model vs transformers on the embedded checkpoint, same run.

    .venv/bin/python bench/bench_model.py [--checkpoint DIR] [--device cpu] [--dtype float32]

Ours runs the serving path (packed forward over the paged latent cache, metadata built every step as
the engine does); transformers runs DeepseekV3ForCausalLM with its DynamicCache. Both compute the
logits of the last token of each sequence per step and pick the argmax (greedy).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_worker.model.attention_metadata import AttentionMetadata  # noqa: E402
from gpu_worker.model.loader import load_model  # noqa: E402
from gpu_worker.model.make_checkpoint import DEFAULT_OUT, make_checkpoint  # noqa: E402

BLOCK = 64


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class Ours:
    name = "ours"

    def __init__(self, path, device, dtype):
        self.model = load_model(path, device=device, dtype=dtype)
        self.device = device

    def start(self, prompts: torch.Tensor) -> torch.Tensor:
        batch, length = prompts.shape
        self.blocks_per_seq = (length + 512) // BLOCK + 1
        self.cache = self.model.allocate_kv_cache(batch * self.blocks_per_seq, BLOCK)
        self.tables = [list(range(b * self.blocks_per_seq, (b + 1) * self.blocks_per_seq)) for b in range(batch)]
        self.lengths = [0] * batch
        return self._step([row for row in prompts])

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._step([t.view(1) for t in tokens])

    def _step(self, new: list[torch.Tensor]) -> torch.Tensor:
        meta = AttentionMetadata.build(
            [(table, done, len(ids)) for table, done, ids in zip(self.tables, self.lengths, new)],
            block_size=BLOCK, device=self.device)
        ids = torch.cat(new)
        positions = torch.cat([torch.arange(done, done + len(t)) for done, t in zip(self.lengths, new)])
        hidden = self.model(ids, positions.to(self.device), meta, self.cache)
        self.lengths = [done + len(t) for done, t in zip(self.lengths, new)]
        last = meta.cu_query_lens[1:] - 1
        return self.model.compute_logits(hidden[last]).argmax(dim=-1)


class Transformers:
    name = "transformers"

    def __init__(self, path, device, dtype):
        from transformers import DeepseekV3ForCausalLM

        self.model = DeepseekV3ForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()

    @torch.inference_mode()
    def start(self, prompts: torch.Tensor) -> torch.Tensor:
        from transformers import DynamicCache

        self.cache = DynamicCache(config=self.model.config)
        out = self.model(prompts, past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1].argmax(dim=-1)

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.model(tokens[:, None], past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1].argmax(dim=-1)


def measure(impl, prompts: torch.Tensor, decode_steps: int, device: str) -> tuple[float, float]:
    """(prefill tokens/s, decode tokens/s) for one batch of equal-length prompts."""
    sync(device)
    t0 = time.perf_counter()
    tokens = impl.start(prompts)
    sync(device)
    t1 = time.perf_counter()
    for _ in range(decode_steps):
        tokens = impl.step(tokens)
    sync(device)
    t2 = time.perf_counter()
    batch, length = prompts.shape
    return batch * length / (t1 - t0), batch * decode_steps / (t2 - t1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--prompt", type=int, default=256, help="prefill prompt length")
    parser.add_argument("--steps", type=int, default=32, help="decode steps")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (default 1: the embedded model's matrices are too small to split)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    path = args.checkpoint
    if path is None:
        path = DEFAULT_OUT if (DEFAULT_OUT / "model.safetensors").exists() else None
    if path is None:
        path = make_checkpoint(Path(tempfile.mkdtemp()) / "embedded", require_tokenizer=False)

    impls = [Ours(path, args.device, dtype), Transformers(path, args.device, dtype)]
    vocab = impls[0].model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    cases = [  # (label, batch, prompt length, decode steps)
        ("prefill", 1, args.prompt, 0),
        ("decode", 1, 32, args.steps),
        ("decode", 32, 32, args.steps),
    ]
    print(f"checkpoint {path}  device {args.device}  dtype {args.dtype}  threads {torch.get_num_threads()}")
    print(f"(best of {args.repeats} alternating runs per cell)")
    print(f"{'phase':<8} {'batch':>5} {'tokens':>6} {'ours tok/s':>11} {'transformers tok/s':>19} {'ratio':>7}")
    for label, batch, length, steps in cases:
        prompts = torch.randint(0, vocab, (batch, length), generator=gen).to(args.device)
        for impl in impls:
            measure(impl, prompts[:, :8], min(steps, 2), args.device)  # warm-up
        best = [0.0, 0.0]
        for _ in range(args.repeats):  # alternate so both see the same machine load
            for i, impl in enumerate(impls):
                prefill, decode = measure(impl, prompts, steps, args.device)
                best[i] = max(best[i], prefill if label == "prefill" else decode)
        tokens = length if label == "prefill" else steps
        print(f"{label:<8} {batch:>5} {tokens:>6} {best[0]:>11.1f} {best[1]:>19.1f} {best[0] / best[1]:>6.1f}x")


if __name__ == "__main__":
    main()
