"""Memory plan of one rank of a tensor/expert-parallel worker, from a checkpoint's config.json.

    python -m gpu_worker.plan --checkpoint-config deepseek-v3 --gpus 8 --gpu-memory 141GB

Per rank of `python -m gpu_worker.server --tensor-parallel-size N`: weights (the model's own
parameters on the meta device), activations of the largest step, communication buffers, and the
largest batch of full-context sequences whose replicated latent KV cache fits.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter, namedtuple
from dataclasses import dataclass
from pathlib import Path

import torch

from gpu_worker.model.config import ModelConfig
from gpu_worker.model.deepseek_v3 import DeepseekV3ForCausalLM
from gpu_worker.parallel.state import Parallel, using

CONFIG_DIR = Path(__file__).parent / "configs"
# one architecture, identical config.json fields
NAMED_CONFIGS = dict.fromkeys(("deepseek-v3", "deepseek-v3-0324", "deepseek-r1"),
                              "deepseek-v3.json")

BF16, FP32 = 2, 4
BLOCK_TOKENS = 64  # the engine's cache block
# CUDA context, cuBLAS workspaces, NCCL's channels, allocator slack per GPU: assumed, not measured
RUNTIME_RESERVE = 3 * 2**30
# parameter name -> weight group, first match
_GROUPS = (("embed_tokens", "embedding"), ("lm_head", "lm_head"), ("norm", "norms"),
           ("self_attn", "attention"), ("mlp.gate.", "router"), ("mlp.experts", "routed"),
           ("mlp.shared_experts", "shared"), ("mlp", "dense"))


Line = namedtuple("Line", "name bytes")


def weight_lines(c: ModelConfig, ranks: int, expert_parallel: bool) -> list[Line]:
    """Bytes of rank 0's parameters by group, and of the bf16 W_UK / W_UV copies of its kv_b_proj
    that the decode path derives on first use. The MTP layer is not loaded."""
    with using(Parallel(rank=0, size=ranks, expert_parallel=expert_parallel)):
        model = DeepseekV3ForCausalLM(c, torch.bfloat16, device="meta", kernel_backend="torch")
    size = Counter()
    for name, p in model.named_parameters():
        size[next(group for key, group in _GROUPS if key in name)] += p.numel() * p.element_size()
    layers, heads = c.num_hidden_layers, c.num_attention_heads // ranks
    moe_layers = layers - c.first_k_dense_replace
    size["absorbed"] = layers * heads * (c.qk_nope_head_dim + c.v_head_dim) * c.kv_lora_rank * BF16
    experts = (f"{c.n_routed_experts // ranks} experts/rank" if expert_parallel
               else f"all experts, 1/{ranks} of each")
    labels = {
        "embedding": "embedding (vocab-parallel, bf16)",
        "lm_head": "lm_head (vocab-parallel, bf16)",
        "attention": f"attention x{layers} ({heads} heads/rank)",
        "absorbed": f"absorbed W_UK/W_UV x{layers} (bf16)",
        "norms": f"norms x{layers} + final (bf16)",
        "dense": f"dense MLP x{c.first_k_dense_replace} (column/row-parallel)",
        "router": f"router x{moe_layers} (float32)",
        "routed": f"routed experts x{moe_layers} ({experts})",
        "shared": f"shared experts x{moe_layers} "
                  f"({'replicated' if expert_parallel else 'tensor-parallel'})",
    }
    return [Line(label, size[group]) for group, label in labels.items()]


def activation_bytes(c: ModelConfig, ranks: int, expert_parallel: bool, step_tokens: int,
                     context: int, max_seqs: int) -> int:
    """Peak transient memory of one layer of the largest step (bf16): hidden states, projections,
    one prefilling sequence's keys/values expanded over the whole context (attention in a fused
    kernel, no score matrix), the MoE's expert rows, and the sampled rows' float32 logits."""
    t, dim, heads = step_tokens, c.hidden_size, c.num_attention_heads // ranks
    hidden = 2 * t * dim
    projections = t * ((c.q_lora_rank or 0) + c.kv_cache_dim + heads * (c.qk_head_dim + c.v_head_dim))
    expanded_kv = context * heads * (c.qk_head_dim + c.v_head_dim)
    rows, inter = expert_rows(c, ranks, expert_parallel, t)
    experts = rows * (2 * dim + 3 * inter)  # input, 2*inter gate_up, inter activation, output
    logits = max_seqs * (math.ceil(c.vocab_size / ranks) + c.vocab_size) * FP32
    return (hidden + projections + expanded_kv + experts) * BF16 + logits


def expert_rows(c: ModelConfig, ranks: int, expert_parallel: bool, tokens: int) -> tuple[int, int]:
    """(token copies one rank's experts may receive in a step, their intermediate width)."""
    if expert_parallel:  # a token picks at most top_k experts, at most E/N of them on one rank
        copies = min(c.num_experts_per_tok, c.n_routed_experts // ranks)
        return tokens * copies, c.moe_intermediate_size
    return tokens * c.num_experts_per_tok, c.moe_intermediate_size // ranks


def communication_bytes(c: ModelConfig, ranks: int, expert_parallel: bool, step_tokens: int) -> int:
    """Buffers of one MoE layer's collectives beyond the in-place all-reduces: with expert
    parallelism, the all-to-all send and receive buffers of dispatch and of combine (worst case)
    and the all-gather of the token chunks."""
    if not expert_parallel or ranks == 1:
        return 0
    chunk = math.ceil(step_tokens / ranks)
    send = chunk * c.num_experts_per_tok
    receive = expert_rows(c, ranks, True, step_tokens)[0]
    return (2 * (send + receive) + ranks * chunk) * c.hidden_size * BF16


@dataclass(frozen=True)
class Plan:
    weights: list[Line]
    activations: int
    communication: int
    kv_per_token: int
    gpu_memory: int

    @property
    def weight_bytes(self) -> int:
        return sum(line.bytes for line in self.weights)

    @property
    def cache_budget(self) -> int:
        used = self.weight_bytes + self.activations + self.communication + RUNTIME_RESERVE
        return self.gpu_memory - used

    def sequence_bytes(self, context: int) -> int:
        return math.ceil(context / BLOCK_TOKENS) * BLOCK_TOKENS * self.kv_per_token

    def max_sequences(self, context: int) -> int:
        return max(0, self.cache_budget // self.sequence_bytes(context))


def make_plan(c: ModelConfig, ranks: int, gpu_memory: int, expert_parallel: bool = True,
              context: int = 65536, step_tokens: int = 2048, max_seqs: int = 256) -> Plan:
    # Every rank holds the whole latent cache: MLA's heads all read one latent per token, so a
    # head split cannot split it.
    return Plan(weight_lines(c, ranks, expert_parallel),
                activation_bytes(c, ranks, expert_parallel, step_tokens, context, max_seqs),
                communication_bytes(c, ranks, expert_parallel, step_tokens),
                c.num_hidden_layers * c.kv_cache_dim * BF16, gpu_memory)


def render(plan: Plan, c: ModelConfig, args: argparse.Namespace) -> str:
    def row(name: str, n: int, width: int = 54) -> str:
        return f"{name:<{width}}{n:>16,d} B {n / 2**30:9.2f} GiB"

    mode = f"TP{args.gpus}" + ("" if args.no_expert_parallel else f" + EP{args.gpus}")
    quant = "FP8 e4m3, 128x128 block scales" if c.fp8_block_size else "bf16"
    out = [f"memory plan per rank: {mode}, weights {quant}, step of {args.max_batch_tokens} "
           f"tokens, {args.max_num_seqs} sampled rows", "weights:"]
    out += [row(f"  {line.name}", line.bytes) for line in plan.weights]
    out += [row("  total weights", plan.weight_bytes),
            row("activations (largest step, one layer)", plan.activations),
            row("communication buffers", plan.communication),
            row("runtime reserve (CUDA, NCCL, allocator; assumed)", RUNTIME_RESERVE),
            row("GPU memory", plan.gpu_memory),
            row("left for the latent KV cache", plan.cache_budget),
            f"KV cache: {plan.kv_per_token:,} B per token ({c.num_hidden_layers} layers x "
            f"{c.kv_cache_dim} bf16 values), replicated on every rank"]
    for ctx in sorted({4096, 16384, 32768, args.context}):
        out.append(f"  {ctx:>6}-token sequences: {plan.sequence_bytes(ctx) / 2**30:6.2f} GiB each "
                   f"-> largest batch {plan.max_sequences(ctx)}")
    return "\n".join(out)


def parse_size(text: str) -> int:
    """'141GB' (10^9), '141GiB' (2^30), or plain bytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a size: {text!r} (e.g. 141GB or 139GiB)")
    unit = (match.group(2) or "B").upper()
    return int(float(match.group(1)) * (2**10 if "I" in unit else 10**3) ** "BKMGT".index(unit[0]))


def load_config(spec: str) -> ModelConfig:
    """A name from gpu_worker/configs, a config.json, or a checkpoint directory holding one."""
    path = CONFIG_DIR / NAMED_CONFIGS[spec] if spec in NAMED_CONFIGS else Path(spec)
    if path.is_dir():
        path = path / "config.json"
    return ModelConfig.from_hf_dict(json.loads(path.read_text()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gpu_worker.plan", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint-config", required=True,
                   help=f"config.json, a checkpoint dir, or one of {', '.join(NAMED_CONFIGS)}")
    p.add_argument("--gpus", type=int, required=True, help="ranks (= --tensor-parallel-size)")
    p.add_argument("--gpu-memory", required=True, help="per GPU, e.g. 141GB (10^9 B) or 139GiB")
    p.add_argument("--no-expert-parallel", action="store_true", help="plan for tensor parallelism alone")
    p.add_argument("--context", type=int, default=65536, help="tokens per sequence (default 65536)")
    p.add_argument("--max-batch-tokens", type=int, default=2048, help="tokens per step, as the server's flag")
    p.add_argument("--max-num-seqs", type=int, default=256, help="sequences per step, as the server's flag")
    args = p.parse_args(argv)
    try:
        config = load_config(args.checkpoint_config)
        plan = make_plan(config, args.gpus, parse_size(args.gpu_memory),
                         not args.no_expert_parallel, args.context, args.max_batch_tokens,
                         args.max_num_seqs)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(plan, config, args))
    return 0 if plan.max_sequences(args.context) > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
