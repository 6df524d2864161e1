"""One prepared check of the GPU engine on a single GPU (an H200), within 8 minutes.

    python bench/gpu_check.py [--budget-s 420]     # on the GPU machine
    python bench/gpu_check.py --tiny               # the same code paths on CPU, Triton interpreter, toy sizes

Sections (each skipped with a printed reason once the time budget cannot cover it):
  a. correctness: the whole model with the Triton kernels (MLA decode, varlen prefill, router, fused
     MoE; FP8 GEMM and FP8 MoE on an FP8 model) against the torch reference backend, over a ragged
     prefill, decode steps and a mixed step; CUDA-graph replay against eager; a decode step and the
     sampler under torch.cuda.set_sync_debug_mode("error").
  b. decode step time and tokens/s at batch 1/16/64/256 x context 2K/8K on a random-weight
     DeepSeek-V3-architecture model of DeepSeek-V2-Lite size (DeepSeek's config_16B: hidden 2048,
     27 layers, 64 routed experts top-6, 2 shared, bf16), as % of the HBM roofline.
  c. a mixed step (64 decodes + one 2048-token chunk) against the pure decode step + the chunk alone.
  d. peak memory at 8K, and the engine's measured cache sizing.
  e. transformers' DeepseekV3ForCausalLM on the same weights (depth cut to E_LAYERS), batch-64 decode.
  f. (issue 15) a slice of DeepSeek-V3 width with FP8 weights: per-layer decode time at batch 1..256
     and an extrapolated per-GPU decode tokens/s for EP8 on 8 GPUs (61 layers), communication estimated.

Prints a markdown block for bench/RESULTS.md last; writes gpu_check.json under $OUT when set. The
commit is read with git, or from $GIT_COMMIT where the copy has no .git.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from itertools import accumulate

TINY = "--tiny" in sys.argv
if TINY:  # before any kernel module is imported: @triton.jit reads it at definition
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gpu_worker.engine.config import EngineConfig  # noqa: E402
from gpu_worker.engine.cuda_graph_runner import DecodeGraphs  # noqa: E402
from gpu_worker.engine.memory_profile import cache_blocks_that_fit  # noqa: E402
from gpu_worker.engine.model_runner import ModelRunner  # noqa: E402
from gpu_worker.engine.sampler import Sampler, SamplingBatch  # noqa: E402
from gpu_worker.engine.sequence import SamplingParams, Sequence  # noqa: E402
from gpu_worker.model.attention_metadata import AttentionMetadata  # noqa: E402
from gpu_worker.model.config import ModelConfig  # noqa: E402
from gpu_worker.model.deepseek_v3 import DeepseekV3ForCausalLM  # noqa: E402

BLOCK = 64
ARCH = {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "topk_method": "noaux_tc",
        "scoring_func": "sigmoid", "norm_topk_prob": True, "hidden_act": "silu", "rope_theta": 10000.0,
        "rope_scaling": None, "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "attention_bias": False,
        "num_nextn_predict_layers": 0, "bos_token_id": 0, "eos_token_id": 1}
# DeepSeek's inference/configs/config_16B.json (DeepSeek-V2-Lite size) in the V3 architecture.
V2_LITE = dict(ARCH, vocab_size=102400, hidden_size=2048, intermediate_size=10944, moe_intermediate_size=1408,
               num_hidden_layers=27, first_k_dense_replace=1, num_attention_heads=16, num_key_value_heads=16,
               n_routed_experts=64, n_shared_experts=2, num_experts_per_tok=6, n_group=1, topk_group=1,
               routed_scaling_factor=1.0, q_lora_rank=None, kv_lora_rank=512, qk_nope_head_dim=128,
               qk_rope_head_dim=64, v_head_dim=128, max_position_embeddings=16384)
# DeepSeek-V3 (671B) widths; SLICE_LAYERS MoE layers of it, a small vocabulary (the head is not timed).
V3_SLICE = dict(ARCH, vocab_size=4096, hidden_size=7168, intermediate_size=18432, moe_intermediate_size=2048,
                num_hidden_layers=3, first_k_dense_replace=0, num_attention_heads=128, num_key_value_heads=128,
                n_routed_experts=256, n_shared_experts=1, num_experts_per_tok=8, n_group=8, topk_group=4,
                routed_scaling_factor=2.5, q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128,
                qk_rope_head_dim=64, v_head_dim=128, max_position_embeddings=16384,
                quantization_config={"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]})
TINY_MODEL = dict(V2_LITE, vocab_size=256, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, n_routed_experts=8,
                  num_experts_per_tok=3, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16)
TINY_SLICE = dict(V3_SLICE, vocab_size=256, hidden_size=256, intermediate_size=256, moe_intermediate_size=128,
                  num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2, n_routed_experts=8,
                  num_experts_per_tok=2, n_group=4, topk_group=2, q_lora_rank=128, kv_lora_rank=128,
                  qk_nope_head_dim=64, qk_rope_head_dim=64, v_head_dim=64, max_position_embeddings=1024)

# The sizes each section runs at: the real ones and the --tiny ones.
SIZES = {
    False: dict(model=V2_LITE, slice=V3_SLICE, batches=[1, 16, 64, 256], contexts=[2048, 8192], mixed_decodes=64,
                chunk=2048, hf_batch=64, hf_context=2048, hf_layers=4, slice_batches=[1, 16, 64, 128, 256],
                slice_context=2048, check_layers=2, check_lengths=[300, 1024, 77], reps=20),
    True: dict(model=TINY_MODEL, slice=TINY_SLICE, batches=[1, 3], contexts=[40, 70], mixed_decodes=3, chunk=24,
               hf_batch=2, hf_context=24, hf_layers=1, slice_batches=[1, 2], slice_context=24, check_layers=2,
               check_lengths=[37, 65, 5], reps=1),
}
NVLINK_GBPS = 300.0    # assumed achieved all-to-all bandwidth per GPU per direction on H200 NVLink (900 GB/s peak, bidirectional)
A2A_LATENCY_US = 25.0  # assumed fixed cost of one dispatch or combine
V3_LAYERS = 61
DEEPSEEK_H800_TOK_S = 1850  # DeepSeek's published production output tokens/s per H800 (open-infra-index, day 6)


# ---- helpers -----------------------------------------------------------------------------------
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device, reps: int) -> float:
    """Median time of fn() in ms (after warm-up runs): CUDA events on the GPU, the host clock on CPU."""
    for _ in range(1 if TINY else 3):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def copy_bandwidth(device, tiny: bool) -> float:
    """Bytes/s of a large device-to-device copy (read + write counted)."""
    n = (64 << 20) if tiny else (4 << 30)
    src = torch.empty(n, dtype=torch.uint8, device=device).random_(0, 255)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), device, reps=5 if tiny else 20)
    del src, dst
    return 2 * n / (ms / 1000)


@torch.no_grad()
def random_model(cfg: dict, device, dtype, backend: str, seed: int = 0) -> DeepseekV3ForCausalLM:
    """Random weights (never zeros): N(0, 1/fan_in) in the model dtype; e4m3 weights N(0, 1) with block
    scales 1/sqrt(fan_in); norms 1; router biases small and positive."""
    config = ModelConfig.from_hf_dict(cfg)
    model = DeepseekV3ForCausalLM(config, dtype=dtype, device=device, kernel_backend=backend).eval()
    g = torch.Generator(device=device).manual_seed(seed)
    for name, p in model.named_parameters():
        for part in (p if p.dim() == 3 else [p]):  # stacked experts one at a time: bounded scratch memory
            if part.dim() == 1:
                part.copy_(torch.rand(part.shape, generator=g, device=device) * 0.1 if "bias" in name
                           else torch.ones_like(part))
            elif part.dtype == torch.float8_e4m3fn:
                part.copy_(torch.randn(part.shape, generator=g, device=device).clamp_(-4, 4).to(part.dtype))
            elif "scale" in name:
                part.fill_(1.0 / math.sqrt(part.shape[-1] * 128))
            else:
                part.copy_(torch.randn(part.shape, generator=g, device=device, dtype=torch.float32)
                           .div_(math.sqrt(part.shape[-1])).to(part.dtype))
    return model


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def model_pair(cfg: dict, device, dtype) -> tuple[DeepseekV3ForCausalLM, DeepseekV3ForCausalLM]:
    """The torch reference and the Triton backend on the same weights."""
    ref = random_model(cfg, device, dtype, "torch", seed=2)
    fast = random_model(cfg, device, dtype, "triton", seed=2)
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def random_cache(model, batch: int, context: int) -> torch.Tensor:
    """A cache for batch sequences of context tokens, random latents (zeros would hide wrong indexing)."""
    cache = model.allocate_kv_cache(batch * -(-context // BLOCK) + 1, BLOCK)
    g = torch.Generator(device=cache.device).manual_seed(1)
    for layer in cache:
        layer.copy_(torch.randn(layer.shape, generator=g, device=cache.device, dtype=torch.float32).to(cache.dtype))
    return cache


def decode_rows(batch: int, context: int) -> list[tuple[int, int, list[int]]]:
    """batch sequences with context tokens each (the last one new), on distinct blocks."""
    per = -(-context // BLOCK)
    return [(5, context - 1, list(range(b * per, (b + 1) * per))) for b in range(batch)]


def graphs_for(model, cache, batches: list[int], context: int, use_graphs: bool | None = None) -> DecodeGraphs:
    use_graphs = cache.device.type == "cuda" if use_graphs is None else use_graphs
    graphs = DecodeGraphs(model, cache, BLOCK, max(batches), -(-context // BLOCK), cache.shape[1] - 1)
    graphs.buckets = sorted(batches)  # only the batch sizes measured
    if use_graphs:
        graphs.capture()
    return graphs


def decode_step(model, graphs: DecodeGraphs, rows) -> torch.Tensor:
    """What the engine does per decode step: the forward, the logits, the greedy token."""
    hidden = graphs.run(rows)
    return model.compute_logits(hidden).argmax(dim=-1)


def weight_bytes(model) -> tuple[float, dict[int, float]]:
    """(bytes of weights every decode step reads except the routed experts and the embedding table,
    {layer: bytes of one routed expert})."""
    dense, expert = 0.0, {}
    for name, p in model.named_parameters():
        size = p.numel() * p.element_size()
        if name.startswith("embed_tokens"):
            continue
        if ".experts." in name and p.dim() >= 3:
            layer = int(name.split(".")[1])
            expert[layer] = expert.get(layer, 0.0) + size / p.shape[0]
        else:
            dense += size
    return dense, expert


def roofline_bytes(model, batch: int, context: int) -> float:
    """Bytes a decode step must read: non-expert weights, the routed experts the batch touches (expected
    distinct experts under uniform routing: E * (1 - (1 - k/E)^B)), and the batch's latent cache."""
    c = model.config
    dense, expert = weight_bytes(model)
    touched = c.n_routed_experts * (1 - (1 - c.num_experts_per_tok / c.n_routed_experts) ** batch)
    kv = batch * context * c.num_hidden_layers * c.kv_cache_dim * torch.empty((), dtype=model.dtype).element_size()
    return dense + touched * sum(expert.values()) + kv


# ---- sections ----------------------------------------------------------------------------------
def check_backends(sz, device, dtype, out):
    """Triton backend vs torch reference: the whole bf16 model over a ragged prefill, two decode steps
    and a mixed step; each FP8 layer of a V3-width model."""
    cfg = dict(sz["model"], num_hidden_layers=sz["check_layers"])
    ref, fast = model_pair(cfg, device, dtype)
    results = {"model": compare_steps(sz, cfg, ref, fast, device)}
    del ref, fast
    results["fp8 layers"] = compare_fp8_layers(sz, device, dtype)
    tol = 5e-2 if dtype == torch.bfloat16 else 2e-3
    out["correctness"] = results
    ok = results["model"]["max_rel_err"] < tol and results["fp8 layers"]["max_rel_err"] < FP8_TOLERANCE
    print(f"a. triton vs torch backend (model tolerance {tol}, FP8 layers {FP8_TOLERANCE}): {results} "
          f"-> {'PASS' if ok else 'FAIL'}")
    return ok


# W8A8 quantises activations per token per 128 channels (e4m3: 3 mantissa bits) where the torch reference
# multiplies in the model dtype: a few percent apart per layer.
FP8_TOLERANCE = 8e-2


@torch.inference_mode()
def compare_fp8_layers(sz, device, dtype) -> dict:
    """Each FP8 linear layer and the FP8 MoE of one V3-width layer, Triton against the torch reference.
    Not the whole model: a few percent moves near-tied expert choices, which random weights amplify."""
    cfg = dict(sz["slice"], num_hidden_layers=1, n_routed_experts=min(32, sz["slice"]["n_routed_experts"]),
               num_attention_heads=min(8, sz["slice"]["num_attention_heads"]))
    ref, fast = model_pair(cfg, device, dtype)
    fast_modules = dict(fast.named_modules())
    errs = {}
    g = torch.Generator(device=device).manual_seed(8)
    for name, module in ref.named_modules():
        weight = getattr(module, "weight", None)
        is_fp8_linear = isinstance(weight, torch.Tensor) and weight.dtype == torch.float8_e4m3fn and weight.dim() == 2
        if name.endswith(".mlp") or is_fp8_linear:
            width = cfg["hidden_size"] if name.endswith(".mlp") else weight.shape[1]
            x = torch.randn(5, width, generator=g, device=device).to(dtype)
            errs[name] = rel_err(fast_modules[name](x), module(x))
    del ref, fast
    return {"max_rel_err": max(errs.values()), "modules": len(errs)}


@torch.inference_mode()
def compare_steps(sz, cfg, ref, fast, device) -> dict:
    """Logits of both models over a ragged prefill, two decode steps and a mixed step."""
    lengths, chunk = sz["check_lengths"], sz["chunk"]
    blocks = sum(-(-(n + 3) // BLOCK) for n in lengths) + -(-chunk // BLOCK) + 1
    caches = [m.allocate_kv_cache(blocks, BLOCK) for m in (ref, fast)]
    g = torch.Generator().manual_seed(4)
    seqs, next_block = [], 0
    for n in lengths:
        per = -(-(n + 3) // BLOCK)
        seqs.append((torch.randint(0, cfg["vocab_size"], (n + 3,), generator=g).tolist(),
                     list(range(next_block, next_block + per))))
        next_block += per
    chunk_seq = (torch.randint(0, cfg["vocab_size"], (chunk,), generator=g).tolist(),
                 list(range(next_block, next_block + -(-chunk // BLOCK))))
    steps = [[(ids, table, 0, len(ids) - 3) for ids, table in seqs]]  # ragged prefill
    for k in (3, 2):  # two decode steps
        steps.append([(ids, table, len(ids) - k, 1) for ids, table in seqs])
    steps.append([(ids, table, len(ids) - 1, 1) for ids, table in seqs[:2]] + [(*chunk_seq, 0, chunk)])
    errs, agree, total = [], 0, 0
    for step in steps:
        layout = [(table, start, n) for _, table, start, n in step]
        ids = torch.tensor([i for seq, _, start, n in step for i in seq[start:start + n]], device=device)
        pos = torch.tensor([p for _, _, start, n in step for p in range(start, start + n)], device=device)
        last = torch.tensor(list(accumulate(n for *_, n in step)), device=device) - 1
        logits = [model.compute_logits(model.forward(ids, pos, AttentionMetadata.build(layout, BLOCK, device), cache)[last])
                  for model, cache in zip((ref, fast), caches)]
        errs.append(rel_err(logits[1], logits[0]))
        agree += int((logits[1].argmax(-1) == logits[0].argmax(-1)).sum())
        total += len(step)
    return {"max_rel_err": max(errs), "argmax_agreement": agree / total}


def check_graphs_and_syncs(sz, device, dtype, out):
    """Graph replay equals the eager step; a decode step and the sampler run with host syncs forbidden."""
    cfg = dict(sz["model"], num_hidden_layers=sz["check_layers"])
    model = random_model(cfg, device, dtype, "triton", seed=3)
    context, batch = sz["contexts"][0], 3
    cache = random_cache(model, batch, context)
    rows = decode_rows(batch, context)
    snapshot = cache.clone()
    eager = graphs_for(model, cache, [4], context, use_graphs=False).run(rows).clone()
    cache.copy_(snapshot)
    graphs = graphs_for(model, cache, [4], context)
    cache.copy_(snapshot)
    replayed = graphs.run(rows).clone()
    err = rel_err(replayed, eager)
    # no host sync: the static decode step (eager, so every op runs under the check) and the sampler
    bs = graphs._fill(rows)
    graphs.packed.copy_(graphs.host)
    seqs = [Sequence(f"s{i}", [1], SamplingParams(temperature=0.7, top_p=0.9, frequency_penalty=0.2)) for i in range(batch)]
    sampling = SamplingBatch.build(seqs, device, None)
    sync(device)
    sync_error = None
    if device.type == "cuda":
        torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.inference_mode():
            hidden = graphs._forward(bs, graphs.max_blocks * BLOCK)
            Sampler().choose(model.compute_logits(hidden[:batch]), sampling)
    except Exception as exc:  # a sync raises here on CUDA
        sync_error = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode(0)
    out["graphs"] = {"graph_vs_eager_rel_err": err, "host_sync_in_decode_step": sync_error}
    ok = err < 2e-2 and sync_error is None
    print(f"a. CUDA graph vs eager rel err {err:.2e}; host sync in a decode step: {sync_error or 'none'} "
          f"-> {'PASS' if ok else 'FAIL'}")
    return ok


def decode_table(sz, device, dtype, bandwidth, budget, out):
    """b + d: decode steps over the bench model, graphs per context; peak memory at the longest context."""
    model = random_model(sz["model"], device, dtype, "triton", seed=0)
    max_batch, longest = max(sz["batches"]), max(sz["contexts"])
    cache = random_cache(model, max_batch, longest)
    rows_out = []
    for context in sz["contexts"]:
        if budget() < 30:
            print(f"b. context {context}: SKIPPED (time budget)")
            break
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        graphs = graphs_for(model, cache, sz["batches"], context)
        for batch in sz["batches"]:
            rows = decode_rows(batch, context)
            ms = median_ms(lambda: decode_step(model, graphs, rows), device, sz["reps"])
            floor_ms = roofline_bytes(model, batch, context) / bandwidth * 1000
            rows_out.append({"batch": batch, "context": context, "step_ms": round(ms, 3),
                             "tokens_per_s": round(batch / ms * 1000, 1), "roofline_ms": round(floor_ms, 3),
                             "roofline_pct": round(100 * floor_ms / ms, 1)})
            print(f"b. batch {batch:>3} ctx {context:>5}: {ms:8.3f} ms/step, {batch / ms * 1000:9.1f} tok/s, "
                  f"roofline {floor_ms:.3f} ms = {100 * floor_ms / ms:.1f}%")
        if context == longest and device.type == "cuda":
            out["peak_memory_8k_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        del graphs
    out["decode"] = rows_out
    return model, cache


def mixed_step(sz, model, cache, device, out):
    """c: 64 decodes + one chunk in one step, against the decode step (graph) plus the chunk alone."""
    context, decodes, chunk = sz["contexts"][0], sz["mixed_decodes"], sz["chunk"]
    rows = decode_rows(decodes, context)
    first_free = decodes * -(-context // BLOCK)
    chunk_table = list(range(first_free, first_free + -(-chunk // BLOCK)))
    graphs = graphs_for(model, cache, [decodes], context)

    def forward(layout, ids, pos):
        meta = AttentionMetadata.build(layout, BLOCK, device)
        hidden = model.forward(ids, pos, meta, cache)
        last = torch.tensor([*range(len(layout) - 1), hidden.shape[0] - 1], device=device)
        return model.compute_logits(hidden[last]).argmax(-1)

    decode_layout = [(table, pos, 1) for _, pos, table in rows]
    mixed_ids = torch.full((decodes + chunk,), 7, device=device)
    mixed_pos = torch.tensor([pos for _, pos, _ in rows] + list(range(chunk)), device=device)
    mixed = median_ms(lambda: forward(decode_layout + [(chunk_table, 0, chunk)], mixed_ids, mixed_pos), device, sz["reps"])
    alone = median_ms(lambda: forward([(chunk_table, 0, chunk)], mixed_ids[decodes:], mixed_pos[decodes:]), device, sz["reps"])
    pure = median_ms(lambda: decode_step(model, graphs, rows), device, sz["reps"])
    ratio = mixed / (pure + alone)
    out["mixed"] = {"mixed_ms": round(mixed, 3), "decode_ms": round(pure, 3), "chunk_alone_ms": round(alone, 3),
                    "ratio": round(ratio, 3)}
    print(f"c. mixed step {mixed:.3f} ms vs decode {pure:.3f} + chunk {alone:.3f} ms: {ratio:.2f}x (target <= 1.5x)")


def cache_sizing(sz, model, device, out):
    """d: the engine's profiled cache sizing for this model at the bench's limits."""
    config = EngineConfig(max_num_seqs=max(sz["batches"]), max_batch_tokens=sz["chunk"], memory_fraction=0.9)
    blocks, figures = cache_blocks_that_fit(model, config, max(sz["contexts"]), device,
                                            ModelRunner.block_bytes(model.config, BLOCK, model.dtype), True)
    out["cache_sizing"] = figures
    print(f"d. profiled step peak {figures['step_peak_bytes'] / 2**30:.2f} GiB, graph pool "
          f"{figures['graph_pool_bytes'] / 2**30:.2f} GiB -> {blocks} cache blocks "
          f"({blocks * BLOCK} tokens); peak at 8K: {out.get('peak_memory_8k_gib')} GiB, no OOM")


@torch.no_grad()
def load_into_transformers(ours, hf) -> None:
    """Copy into transformers' model, whose experts may be per-expert modules (4.x) or fused
    gate_up_proj [E, 2I, D] / down_proj [E, D, I] tensors (5.x)."""
    state = {name: entry[0][entry[1]] if entry[1] else entry[0]  # ours by Hugging Face (per-expert) name
             for name, entry in ours.checkpoint_layout().items() if entry is not None}
    for name, tensor in hf.state_dict().items():
        if name in state:
            tensor.copy_(state[name])
        elif name.endswith("mlp.experts.gate_up_proj"):
            prefix = name[: -len("gate_up_proj")]
            for e in range(tensor.shape[0]):
                tensor[e].copy_(torch.cat((state[f"{prefix}{e}.gate_proj.weight"], state[f"{prefix}{e}.up_proj.weight"])))
        elif name.endswith("mlp.experts.down_proj"):
            prefix = name[: -len("down_proj")]
            for e in range(tensor.shape[0]):
                tensor[e].copy_(state[f"{prefix}{e}.down_proj.weight"])
        elif "rotary" not in name:
            raise KeyError(f"no weight of ours for transformers' {name}")


def transformers_ratio(sz, device, dtype, out):
    """e: batch decode through transformers vs ours, same weights, same depth (cut to hf_layers)."""
    from transformers import DeepseekV3Config
    from transformers import DeepseekV3ForCausalLM as HFModel

    cfg = dict(sz["model"], num_hidden_layers=sz["hf_layers"])
    batch, context = sz["hf_batch"], sz["hf_context"]
    ours = random_model(cfg, device, dtype, "triton", seed=5)
    cache = random_cache(ours, batch, context)
    graphs = graphs_for(ours, cache, [batch], context)
    rows = decode_rows(batch, context)
    our_ms = median_ms(lambda: decode_step(ours, graphs, rows), device, sz["reps"])
    del graphs, cache

    hf_cfg = DeepseekV3Config(**{k: v for k, v in cfg.items() if k not in ("architectures", "quantization_config")})
    with torch.device(device):  # initialised on the device: a CPU init of billions of weights takes minutes
        hf = HFModel(hf_cfg).to(dtype).eval()
    load_into_transformers(ours, hf)
    del ours
    c = hf_cfg
    g = torch.Generator(device=device).manual_seed(6)
    prompt = torch.randint(0, c.vocab_size, (batch, context - 1), generator=g, device=device)
    with torch.no_grad():  # the base model: the cache without [batch, context, vocab] logits
        kv = hf.model(input_ids=prompt, use_cache=True).past_key_values
    ids = torch.full((batch, 1), 5, device=device)

    def hf_step():
        with torch.no_grad():
            pos = torch.full((batch, 1), kv.get_seq_length(), device=device)
            logits = hf(input_ids=ids, position_ids=pos, past_key_values=kv, use_cache=True).logits
            return logits[:, -1].argmax(-1)

    hf_ms = median_ms(hf_step, device, max(1, sz["reps"] // 4))
    out["transformers"] = {"layers": c.num_hidden_layers, "batch": batch, "context": context, "ours_ms": round(our_ms, 3),
                           "transformers_ms": round(hf_ms, 3), "speedup": float(f"{hf_ms / our_ms:.3g}")}
    print(f"e. batch {batch} decode, {c.num_hidden_layers} layers, ctx {context}: ours {our_ms:.3f} ms, "
          f"transformers {hf_ms:.3f} ms -> {hf_ms / our_ms:.1f}x (target >= 20x)")
    del hf, kv


def v3_slice(sz, device, dtype, bandwidth, budget, out):
    """f: per-layer decode time of DeepSeek-V3-width FP8 layers, and an EP8 extrapolation."""
    cfg = sz["slice"]
    model = random_model(cfg, device, dtype, "triton", seed=7)
    layers, context = cfg["num_hidden_layers"], sz["slice_context"]
    batches = sz["slice_batches"]
    cache = random_cache(model, max(batches), context)
    graphs = graphs_for(model, cache, batches, context)
    moe = model.layers[0].mlp
    hidden = cfg["hidden_size"]
    # the head of the real model: lm_head [129280, 7168] bf16 read once per step
    head_ms = 129280 * 7168 * 2 / bandwidth * 1000
    rows_out = []
    for batch in batches:
        if budget() < 15:
            print(f"f. batch {batch}: SKIPPED (time budget)")
            break
        rows = decode_rows(batch, context)
        step_ms = median_ms(lambda: graphs.run(rows), device, sz["reps"])  # embedding + layers, no head
        layer_ms = step_ms / layers
        x = torch.randn(batch, hidden, device=device, dtype=dtype)
        x8 = torch.randn(8 * batch, hidden, device=device, dtype=dtype)
        with torch.inference_mode():
            moe_ms = median_ms(lambda: moe(x), device, sz["reps"])
            moe8_ms = median_ms(lambda: moe(x8), device, sz["reps"])
        # EP8: each GPU keeps its B sequences' attention and 1/8 of the experts, which receive the routed
        # tokens of all 8 GPUs (8B tokens): ~ our MoE time at 8B tokens / 8 (weights and work both / 8).
        # Communication per layer: dispatch (e4m3, D bytes) + combine (bf16, 2D bytes) of the B*k routed
        # copies, 7/8 of them to other GPUs.
        comm_bytes = batch * cfg["num_experts_per_tok"] * 7 / 8 * hidden * 3
        comm_ms = 2 * A2A_LATENCY_US / 1000 + comm_bytes / (NVLINK_GBPS * 1e9) * 1000
        ep8_layer_ms = layer_ms - moe_ms + moe8_ms / 8 + comm_ms
        ep8_step_ms = V3_LAYERS * ep8_layer_ms + head_ms
        rows_out.append({"batch": batch, "layer_ms": round(layer_ms, 4), "moe_ms": round(moe_ms, 4),
                         "moe_8x_tokens_ms": round(moe8_ms, 4), "comm_ms": round(comm_ms, 4),
                         "ep8_step_ms": round(ep8_step_ms, 3), "ep8_tok_s_per_gpu": round(batch / ep8_step_ms * 1000, 1)})
        print(f"f. V3 slice batch {batch:>3}: {layer_ms:.4f} ms/layer (MoE {moe_ms:.4f}, MoE at 8x tokens {moe8_ms:.4f}), "
              f"EP8 step {ep8_step_ms:.2f} ms -> {batch / ep8_step_ms * 1000:.0f} tok/s per GPU "
              f"(DeepSeek: ~{DEEPSEEK_H800_TOK_S} per H800)")
    out["v3_slice"] = {"layers_timed": layers, "context": context, "rows": rows_out,
                       "assumptions": {"nvlink_gbps": NVLINK_GBPS, "a2a_latency_us": A2A_LATENCY_US, "hidden": hidden,
                                       "layers": V3_LAYERS, "head_ms": round(head_ms, 4),
                                       "dense_layers_costed_as_moe_layers": 3}}
    del model, cache, graphs


def markdown(out) -> str:
    lines = [f"## {out['date']} — {out['device']}", "",
             f"commit `{out['commit']}`, torch {out['torch']}, triton {out['triton']}, "
             f"measured copy bandwidth {out['bandwidth_gbps']} GB/s" + (" (--tiny: CPU interpreter, toy sizes; not GPU figures)" if out["tiny"] else ""),
             ""]
    for key in ("correctness", "graphs"):
        if key in out:
            lines.append(f"- {key}: `{json.dumps(out[key])}`")
    if out.get("decode"):
        lines += ["", "| batch | ctx | step ms | tok/s | roofline ms | % roofline |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['batch']} | {r['context']} | {r['step_ms']} | {r['tokens_per_s']} | {r['roofline_ms']} "
                  f"| {r['roofline_pct']} |" for r in out["decode"]]
    for key in ("mixed", "peak_memory_8k_gib", "cache_sizing", "transformers"):
        if key in out:
            lines.append(f"- {key}: `{json.dumps(out[key])}`")
    if "v3_slice" in out:
        s = out["v3_slice"]
        lines += ["", f"V3-width FP8 slice ({s['layers_timed']} MoE layers, ctx {s['context']}); EP8 extrapolation: "
                  f"61 x (layer - MoE(B) + MoE(8B)/8 + comm) + head; comm = 2 x {A2A_LATENCY_US} us + "
                  f"B x 8 x 7/8 x {s['assumptions']['hidden']} x 3 bytes / {NVLINK_GBPS} GB/s; head = 129280 x 7168 x 2 bytes "
                  f"/ copy bandwidth; the 3 dense layers costed as MoE layers; DeepSeek's published figure ~{DEEPSEEK_H800_TOK_S} "
                  "output tok/s per H800.", "",
                  "| batch | ms/layer | MoE ms | MoE(8B) ms | comm ms | EP8 step ms | tok/s per GPU |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['batch']} | {r['layer_ms']} | {r['moe_ms']} | {r['moe_8x_tokens_ms']} | {r['comm_ms']} "
                  f"| {r['ep8_step_ms']} | {r['ep8_tok_s_per_gpu']} |" for r in s["rows"]]
    if out["skipped"] or out["failed"]:
        lines += ["", f"- skipped: {out['skipped'] or 'none'}; failed: {out['failed'] or 'none'}"]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true", help="CPU, Triton interpreter, toy sizes (CI)")
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="start no section (or batch size) that would not fit in this many seconds; keeps a run under 8 minutes")
    args = ap.parse_args()
    device = torch.device("cpu" if args.tiny else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --tiny on CPU")
        return 2
    dtype = torch.float32 if args.tiny else torch.bfloat16
    sz = SIZES[args.tiny]
    deadline = time.monotonic() + args.budget_s
    budget = lambda: deadline - time.monotonic()  # seconds left
    import triton
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    out = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "tiny": args.tiny,
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (Triton interpreter)",
           "commit": commit or os.environ.get("GIT_COMMIT", "unknown"), "torch": torch.__version__,
           "triton": triton.__version__, "skipped": [], "failed": []}
    bandwidth = copy_bandwidth(device, args.tiny)
    out["bandwidth_gbps"] = round(bandwidth / 1e9, 1)
    print(f"{out['device']}: copy bandwidth {bandwidth / 1e9:.1f} GB/s")

    state: dict = {}

    def bench_model():
        state["model"], state["cache"] = decode_table(sz, device, dtype, bandwidth, budget, out)

    def sizing():  # KeyError when section b failed
        del state["cache"]
        if device.type == "cuda":
            torch.cuda.empty_cache()
            cache_sizing(sz, state["model"], device, out)
        state.clear()

    # (name, seconds it needs at least, function); a failure is printed and the next section runs
    sections = [
        ("a. backends", 60, lambda: check_backends(sz, device, dtype, out) or out["failed"].append("a. backends")),
        ("a. graphs and syncs", 30, lambda: check_graphs_and_syncs(sz, device, dtype, out) or out["failed"].append("a. graphs")),
        ("b. decode table", 120, bench_model),
        ("c. mixed step", 20, lambda: mixed_step(sz, state["model"], state["cache"], device, out)),
        ("d. cache sizing", 20, sizing),
        ("e. transformers", 60, lambda: transformers_ratio(sz, device, dtype, out)),
        ("f. V3 FP8 slice", 90, lambda: v3_slice(sz, device, dtype, bandwidth, budget, out)),
    ]
    current = ["start"]
    watchdog = start_watchdog(args.budget_s + 45, out, current)
    for name, needs, fn in sections:
        current[0] = name
        needs = 0 if args.tiny else needs
        if budget() < needs:
            print(f"{name}: SKIPPED ({budget():.0f} s left of the budget, needs ~{needs} s)")
            out["skipped"].append(name)
            continue
        started = time.monotonic()
        try:
            fn()
        except Exception as exc:
            traceback.print_exc()
            print(f"{name}: FAILED ({type(exc).__name__}: {str(exc)[:200]})")
            out["failed"].append(name)
            if name.startswith(("b.", "c.")):
                state.clear()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"   ({name}: {time.monotonic() - started:.1f} s)", flush=True)

    watchdog.cancel()
    finish(out)
    return 1 if out["failed"] else 0


def finish(out) -> None:
    print("\n" + markdown(out), flush=True)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "gpu_check.json"), "w") as f:
            json.dump(out, f, indent=1)


def start_watchdog(seconds: float, out: dict, current: list) -> threading.Timer:
    """A section that overruns the budget by far still leaves its report: print what is done, exit."""
    def expire():
        print(f"\nTIMEOUT: {current[0]} still running after {seconds:.0f} s; reporting what finished", flush=True)
        out["failed"].append(f"{current[0]} (timeout)")
        finish(out)
        os._exit(3)
    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer


if __name__ == "__main__":
    sys.exit(main())
