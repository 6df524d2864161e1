"""Prefill and decode throughput of our model vs transformers on the embedded checkpoint, same run.

    .venv/bin/python bench/bench_model.py [--checkpoint DIR] [--dtype bfloat16] [--threads 2]

Ours runs the serving path (packed forward over the paged latent cache, metadata built every step as the
engine does); transformers runs DeepseekV3ForCausalLM with its DynamicCache, called step
by step with past_key_values (what `generate` does), with its fastest CPU settings for this model: SDPA
attention and `experts_implementation="batched_mm"` (its default, grouped_mm, was ~30% slower per decode
step here). Both pick the greedy next token of the last token of each sequence per step. Ours calls
`greedy_next_tokens` (`compute_logits(...).argmax(-1)`);
transformers runs its forward with `logits_to_keep=1` and takes `argmax` of the logits it returns (its
normal path, logits in the model dtype). Same checkpoint, dtype (the checkpoint's, bfloat16, by default) and
thread count for both.
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
        return self.model.greedy_next_tokens(hidden[last])


class Transformers:
    name = "transformers"

    def __init__(self, path, device, dtype, experts="batched_mm"):
        from transformers import DeepseekV3ForCausalLM

        self.model = DeepseekV3ForCausalLM.from_pretrained(
            path, dtype=dtype, attn_implementation="sdpa", experts_implementation=experts
        ).to(device).eval()

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


def describe(config) -> str:
    c = config
    return (f"vocab {c.vocab_size}, hidden {c.hidden_size}, {c.num_hidden_layers} layers ({c.first_k_dense_replace} dense), "
            f"{c.num_attention_heads} heads, q_lora {c.q_lora_rank}, kv_lora {c.kv_lora_rank}, "
            f"{c.n_routed_experts} experts in {c.n_group} groups (top-{c.num_experts_per_tok} from {c.topk_group} groups), "
            f"{c.n_shared_experts} shared, moe_inter {c.moe_intermediate_size}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--prompt", type=int, default=128, help="prompt length (prefill tokens per sequence)")
    parser.add_argument("--steps", type=int, default=32, help="decode steps after the prompt")
    parser.add_argument("--batches", default="1,32", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads, for both implementations")
    parser.add_argument("--hf-experts", default="batched_mm", choices=["batched_mm", "grouped_mm", "eager"],
                        help="transformers' experts_implementation")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)

    path = args.checkpoint
    if path is None:
        path = DEFAULT_OUT if (DEFAULT_OUT / "model.safetensors").exists() else None
    if path is None:
        path = make_checkpoint(Path(tempfile.mkdtemp()) / "embedded", require_tokenizer=False)

    impls = [Ours(path, args.device, dtype), Transformers(path, args.device, dtype, args.hf_experts)]
    config = impls[0].model.config
    gen = torch.Generator().manual_seed(0)
    print(f"checkpoint {path}\nconfig: {describe(config)}")
    print(f"device {args.device}  dtype {args.dtype}  threads {torch.get_num_threads()} (both)  "
          f"transformers experts_implementation={args.hf_experts}")
    print(f"prompt {args.prompt} tokens then {args.steps} greedy decode steps per sequence; "
          f"best of {args.repeats} alternating runs per cell")
    print("greedy pick: ours model.greedy_next_tokens(hidden); "
          "transformers out.logits[:, -1].argmax(-1) (its normal forward, logits_to_keep=1)")
    print(f"{'phase':<8} {'batch':>5} {'ours tok/s':>11} {'transformers tok/s':>19} {'ratio':>7}")
    for batch in (int(b) for b in args.batches.split(",")):
        prompts = torch.randint(0, config.vocab_size, (batch, args.prompt), generator=gen).to(args.device)
        for impl in impls:
            measure(impl, prompts[:, :8], 2, args.device)  # warm-up
        best = [[0.0, 0.0], [0.0, 0.0]]  # [impl][prefill, decode]
        for _ in range(args.repeats):  # alternate so both see the same machine load
            for i, impl in enumerate(impls):
                rates = measure(impl, prompts, args.steps, args.device)
                best[i] = [max(b, r) for b, r in zip(best[i], rates)]
        for phase, k in (("prefill", 0), ("decode", 1)):
            ours, theirs = best[0][k], best[1][k]
            print(f"{phase:<8} {batch:>5} {ours:>11.1f} {theirs:>19.1f} {ours / theirs:>6.2f}x", flush=True)


if __name__ == "__main__":
    main()
