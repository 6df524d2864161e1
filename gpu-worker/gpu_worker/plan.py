"""Memory plan of one rank of a tensor/expert-parallel worker, from a checkpoint's config.json.

    python -m gpu_worker.plan --checkpoint-config deepseek-v3 --gpus 8 --gpu-memory 141GB

Counts, per rank, what `python -m gpu_worker.server --tensor-parallel-size N [--enable-expert-parallel]`
keeps on a GPU: the weights as the checkpoint stores them (FP8 e4m3 + one float32 scale per 128x128
block; embeddings, lm_head and norms in bf16, the router in float32 as the model holds it), the
replicated latent KV cache, the activations of the largest step and the communication buffers, then
the largest batch of full-context sequences that fits. The weights are the parameters of the model
itself, built on the meta device; the other terms are formulas of the config.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from gpu_worker.model.config import ModelConfig
from gpu_worker.model.deepseek_v3 import DeepseekV3ForCausalLM
from gpu_worker.parallel.state import Parallel, using

CONFIG_DIR = Path(__file__).parent / "configs"
NAMED_CONFIGS = {"deepseek-v3": "deepseek-v3.json", "deepseek-v3-0324": "deepseek-v3.json",
                 "deepseek-r1": "deepseek-v3.json"}  # one architecture, identical config.json fields

BF16, FP32 = 2, 4
BLOCK_TOKENS = 64  # the engine's cache block
# CUDA context, cuBLAS workspaces, NCCL's own channels and allocator slack, per GPU: an assumption, not measured.
RUNTIME_RESERVE = 3 * 2**30


@dataclass(frozen=True)
class Line:
    name: str
    bytes: int


# parameter name -> weight group, first match
_GROUPS = (("embed_tokens", "embedding"), ("lm_head", "lm_head"), ("norm", "norms"),
           ("self_attn", "attention"), ("mlp.gate.", "router"), ("mlp.experts", "routed"),
           ("mlp.shared_experts", "shared"), ("mlp", "dense"))


def weight_lines(c: ModelConfig, ranks: int, expert_parallel: bool) -> list[Line]:
    """Bytes per rank of every weight group: rank 0's parameters of the model as the server builds
    it (here on the meta device: shapes, no memory), plus the bf16 W_UK / W_UV copies of its
    kv_b_proj that the decode path derives on first use. The MTP layer is not loaded."""
    with using(Parallel(rank=0, size=ranks, expert_parallel=expert_parallel)):
        model = DeepseekV3ForCausalLM(c, dtype=torch.bfloat16, device="meta", kernel_backend="torch")
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


def kv_bytes_per_token(c: ModelConfig, kv_bytes: int = BF16) -> int:
    """Every rank holds the whole latent (kv_lora_rank + rope per token per layer): MLA's heads all read the
    same latent, so a head split cannot split the cache."""
    return c.num_hidden_layers * c.kv_cache_dim * kv_bytes


def activation_bytes(c: ModelConfig, ranks: int, expert_parallel: bool, step_tokens: int, context: int,
                     max_seqs: int) -> int:
    """Peak transient memory of one layer of the largest step (bf16 activations): hidden states, projections,
    one prefilling sequence's keys/values expanded over the whole context (attention itself in a fused
    kernel, no score matrix), the expert rows of the MoE, and the sampled rows' float32 logits."""
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
    if expert_parallel:  # a token picks at most top_k experts, and at most E/N of them live on one rank
        return tokens * min(c.num_experts_per_tok, c.n_routed_experts // ranks), c.moe_intermediate_size
    return tokens * c.num_experts_per_tok, c.moe_intermediate_size // ranks


def communication_bytes(c: ModelConfig, ranks: int, expert_parallel: bool, step_tokens: int) -> int:
    """Buffers of the collectives of one MoE layer (all-reduces run in place): with expert parallelism the
    all-to-all send and receive buffers of dispatch and of combine, sized for the worst case, plus the
    all-gather of the token chunks; without, none beyond the in-place all-reduce."""
    if not expert_parallel or ranks == 1:
        return 0
    chunk = math.ceil(step_tokens / ranks)
    send = chunk * c.num_experts_per_tok * c.hidden_size * BF16
    receive = expert_rows(c, ranks, True, step_tokens)[0] * c.hidden_size * BF16
    gather = ranks * chunk * c.hidden_size * BF16
    return 2 * (send + receive) + gather


def parse_size(text: str) -> int:
    """'141GB' (10^9), '141GiB' (2^30), or plain bytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a size: {text!r} (e.g. 141GB or 139GiB)")
    unit = (match.group(2) or "B").upper()
    scale = (2**10 if "I" in unit else 10**3) ** "BKMGT".index(unit[0])
    return int(float(match.group(1)) * scale)


def load_config(spec: str) -> ModelConfig:
    """A name from gpu_worker/configs, a config.json, or a checkpoint directory holding one."""
    path = CONFIG_DIR / NAMED_CONFIGS[spec] if spec in NAMED_CONFIGS else Path(spec)
    if path.is_dir():
        path = path / "config.json"
    return ModelConfig.from_hf_dict(json.loads(path.read_text()))


@dataclass(frozen=True)
class Plan:
    weights: list[Line]
    activations: int
    communication: int
    reserve: int
    kv_per_token: int
    gpu_memory: int

    @property
    def weight_bytes(self) -> int:
        return sum(line.bytes for line in self.weights)

    @property
    def cache_budget(self) -> int:
        return self.gpu_memory - self.weight_bytes - self.activations - self.communication - self.reserve

    def sequence_bytes(self, context: int) -> int:
        return math.ceil(context / BLOCK_TOKENS) * BLOCK_TOKENS * self.kv_per_token

    def max_sequences(self, context: int) -> int:
        return max(0, self.cache_budget // self.sequence_bytes(context))


def make_plan(c: ModelConfig, ranks: int, gpu_memory: int, expert_parallel: bool = True,
              context: int = 65536, step_tokens: int = 2048, max_seqs: int = 256) -> Plan:
    return Plan(weights=weight_lines(c, ranks, expert_parallel),
                activations=activation_bytes(c, ranks, expert_parallel, step_tokens, context, max_seqs),
                communication=communication_bytes(c, ranks, expert_parallel, step_tokens),
                reserve=RUNTIME_RESERVE, kv_per_token=kv_bytes_per_token(c), gpu_memory=gpu_memory)


def _gib(n: int) -> str:
    return f"{n:>16,d} B {n / 2**30:9.2f} GiB"


def render(plan: Plan, c: ModelConfig, ranks: int, expert_parallel: bool, context: int, step_tokens: int,
           max_seqs: int) -> str:
    mode = f"TP{ranks}" + (f" + EP{ranks}" if expert_parallel else "")
    quant = "FP8 e4m3, 128x128 block scales" if c.fp8_block_size else "bf16"
    out = [f"memory plan per rank: {mode}, weights {quant}, step of {step_tokens} tokens, {max_seqs} sampled rows",
           "weights:"]
    out += [f"  {line.name:<52}{_gib(line.bytes)}" for line in plan.weights]
    out += [f"  {'total weights':<52}{_gib(plan.weight_bytes)}",
            f"{'activations (largest step, one layer)':<54}{_gib(plan.activations)}",
            f"{'communication buffers':<54}{_gib(plan.communication)}",
            f"{'runtime reserve (CUDA, NCCL, allocator; assumed)':<54}{_gib(plan.reserve)}",
            f"{'GPU memory':<54}{_gib(plan.gpu_memory)}",
            f"{'left for the latent KV cache':<54}{_gib(plan.cache_budget)}",
            f"KV cache: {plan.kv_per_token:,} B per token ({c.num_hidden_layers} layers x {c.kv_cache_dim} bf16 "
            "values), replicated on every rank"]
    for ctx in sorted({4096, 16384, 32768, context}):
        out.append(f"  {ctx:>6}-token sequences: {plan.sequence_bytes(ctx) / 2**30:6.2f} GiB each "
                   f"-> largest batch {plan.max_sequences(ctx)}")
    return "\n".join(out)


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
        memory = parse_size(args.gpu_memory)
        ep = not args.no_expert_parallel
        plan = make_plan(config, args.gpus, memory, ep, args.context, args.max_batch_tokens, args.max_num_seqs)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(plan, config, args.gpus, ep, args.context, args.max_batch_tokens, args.max_num_seqs))
    return 0 if plan.max_sequences(args.context) > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
