"""One prepared check of the GPU engine on one GPU (an H200), within 8 minutes (issues 14 and 15).

    python bench/gpu_check.py [--budget-s 420]  # on the GPU; $GIT_COMMIT if the copy has no .git
    python bench/gpu_check.py --tiny            # the same code on CPU, interpreted, at toy sizes

Prints each section's figures as it ends, then the block for bench/RESULTS.md ($OUT/gpu_check.json
too); a section past the budget is cut off and the others are still reported.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time
import timeit
import traceback
from itertools import accumulate

TINY = "--tiny" in sys.argv
if TINY:  # before any kernel module is imported: @triton.jit reads it at definition
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402
import triton  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gpu_worker.engine.cuda_graph_runner import DecodeGraphs  # noqa: E402
from gpu_worker.engine.sampler import Sampler, SamplingBatch  # noqa: E402
from gpu_worker.engine.sequence import SamplingParams, Sequence  # noqa: E402
from gpu_worker.model.attention_metadata import AttentionMetadata  # noqa: E402
from gpu_worker.model.config import ModelConfig  # noqa: E402
from gpu_worker.model.deepseek_v3 import DeepseekV3ForCausalLM  # noqa: E402

CUDA = not TINY
DEVICE = torch.device("cuda" if CUDA else "cpu")
DTYPE = torch.bfloat16 if CUDA else torch.float32
BLOCK = 64
with open(os.path.join(ROOT, "gpu_worker/configs/deepseek-v3.json")) as f:
    V3 = json.load(f)
# A few FP8 layers of DeepSeek-V3 (671B), all MoE; a small vocabulary (the head is not timed).
V3_SLICE = dict(V3, vocab_size=4096, num_hidden_layers=3, first_k_dense_replace=0)
# DeepSeek's inference/configs/config_16B.json (DeepSeek-V2-Lite size) in the V3 architecture.
V2_LITE = dict({k: v for k, v in V3.items() if k != "quantization_config"}, vocab_size=102400,
               hidden_size=2048, intermediate_size=10944, moe_intermediate_size=1408,
               num_hidden_layers=27, first_k_dense_replace=1, num_attention_heads=16,
               num_key_value_heads=16, n_routed_experts=64, n_shared_experts=2,
               num_experts_per_tok=6, n_group=1, topk_group=1, routed_scaling_factor=1.0,
               q_lora_rank=None, rope_scaling=None, max_position_embeddings=16384)
# mid_batch: the mixed step's decodes and transformers' batch; hf_layers: transformers' depth
SZ = dict(model=V2_LITE, slice=V3_SLICE, batches=[1, 16, 64, 256], contexts=[2048, 8192],
          chunk=2048, mid_batch=64, hf_layers=4, slice_batches=[1, 16, 64, 128, 256],
          check_lengths=[300, 1024, 77], reps=20)
if TINY:
    TOY = dict(vocab_size=256, hidden_size=128, intermediate_size=128, moe_intermediate_size=128,
               num_attention_heads=2, num_key_value_heads=2, n_routed_experts=8,
               num_experts_per_tok=2, kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=32,
               v_head_dim=32, max_position_embeddings=1024)
    SZ = dict(model=dict(V2_LITE, **TOY, num_hidden_layers=2),
              slice=dict(V3_SLICE, **dict(TOY, hidden_size=256), num_hidden_layers=1, n_group=4,
                         topk_group=2, q_lora_rank=128, rope_scaling=None),  # 2 FP8 blocks wide
              batches=[1, 3], contexts=[40, 70], chunk=24, mid_batch=3, hf_layers=1,
              slice_batches=[1, 2], check_lengths=[37, 65, 5], reps=1)
MODEL_TOLERANCE = 5e-2 if CUDA else 2e-3  # relative error of the logits, Triton vs torch backend
FP8_TOLERANCE = 8e-2  # W8A8 rounds activations to e4m3; the reference does not: a few % per layer
NVLINK_GBPS = 300.0  # assumed all-to-all GB/s per GPU per direction (NVLink: 900 peak, both ways)
A2A_LATENCY_US = 25.0  # assumed fixed cost of one dispatch or combine


def clock() -> float:
    """The host clock, once the device has done what was queued."""
    if CUDA:
        torch.cuda.synchronize()
    return time.perf_counter()


def ms_per_call(fn, reps: int = 0) -> float:
    """fn's mean ms over reps back-to-back calls after one warm-up call."""
    reps = reps or SZ["reps"]
    fn()
    return timeit.Timer(fn, timer=clock).timeit(reps) * 1000 / reps


@torch.no_grad()
def random_model(cfg: dict, backend: str, seed: int, **overrides) -> DeepseekV3ForCausalLM:
    """Random weights, never zeros, the same for a seed whatever the backend: N(0, 1/fan_in) in the
    model dtype; e4m3 weights N(0, 1) with block scales 1/sqrt(fan_in); norms 1; router biases small
    and positive."""
    model = DeepseekV3ForCausalLM(ModelConfig.from_hf_dict(dict(cfg, **overrides)), dtype=DTYPE,
                                  device=DEVICE, kernel_backend=backend).eval()
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    for name, p in model.named_parameters():
        for part in (p if p.dim() == 3 else [p]):  # stacked experts one by one: bounded scratch
            w = torch.randn(part.shape, generator=g, device=DEVICE)
            if part.dim() == 1:
                w = w.abs() * 0.1 if "bias" in name else torch.ones_like(w)
            elif "scale" in name:
                w = torch.full_like(w, (part.shape[-1] * 128) ** -0.5)
            elif part.dtype != torch.float8_e4m3fn:
                w = w * part.shape[-1] ** -0.5
            part.copy_(w.clamp(-4, 4).to(part.dtype))
    return model


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp(min=1e-30))


def random_cache(model, batch: int, context: int) -> torch.Tensor:
    """A cache for batch sequences of context tokens; random latents (zeros hide wrong indexing)."""
    cache = model.allocate_kv_cache(batch * -(-context // BLOCK) + 1, BLOCK)
    g = torch.Generator(device=DEVICE).manual_seed(1)
    for layer in cache:
        layer.copy_(torch.randn(layer.shape, generator=g, device=DEVICE).to(cache.dtype))
    return cache


def decode_rows(batch: int, context: int) -> list[tuple[int, int, list[int]]]:
    """batch sequences with context tokens each (the last one new), on distinct blocks."""
    per = -(-context // BLOCK)
    return [(5, context - 1, list(range(b * per, (b + 1) * per))) for b in range(batch)]


def graphs_for(model, cache, batches: list[int], context: int, capture=CUDA) -> DecodeGraphs:
    graphs = DecodeGraphs(model, cache, BLOCK, max(batches), -(-context // BLOCK),
                          pad_block=cache.shape[1] - 1)
    graphs.buckets = sorted(batches)  # only the batch sizes measured
    if capture:
        graphs.capture()
    return graphs


def step_logits(model, cache, step) -> torch.Tensor:
    """Logits at each sequence's last new token of a step [(token ids, table, cached, new)]."""
    ids = torch.tensor([i for seq, _, s, n in step for i in seq[s:s + n]], device=DEVICE)
    pos = torch.tensor([p for _, _, s, n in step for p in range(s, s + n)], device=DEVICE)
    last = torch.tensor([n for *_, n in step], device=DEVICE).cumsum(0) - 1
    meta = AttentionMetadata.build([(t, s, n) for _, t, s, n in step], BLOCK, DEVICE)
    return model.compute_logits(model.forward(ids, pos, meta, cache)[last])


def roofline_bytes(model, batch: int, context: int) -> float:
    """Bytes a decode step must read: the weights but the embedding table and the routed experts
    the batch does not touch (expected under uniform routing), and the batch's latent cache."""
    c = model.config
    touched = 1 - (1 - c.num_experts_per_tok / c.n_routed_experts) ** batch
    total = batch * context * c.num_hidden_layers * c.kv_cache_dim * model.dtype.itemsize
    for name, p in model.named_parameters():
        if not name.startswith("embed_tokens"):
            share = touched if ".experts." in name and p.dim() >= 3 else 1
            total += p.numel() * p.element_size() * share
    return total


# ---- sections: each records its figures in out and returns False when a check fails ------------
def model_checks(out: dict) -> bool:
    """The whole model on the Triton kernels against the torch backend (a ragged prefill, 2 decode
    steps, a mixed one); its decode step replayed from a CUDA graph against the plain packed step;
    an eager decode step and the sampler with host syncs forbidden."""
    ref, fast = (random_model(SZ["model"], b, 2, num_hidden_layers=2) for b in ("torch", "triton"))
    g = torch.Generator().manual_seed(4)
    lengths = [n + 3 for n in SZ["check_lengths"]] + [SZ["chunk"]]
    first = [0, *accumulate(-(-n // BLOCK) for n in lengths)]  # each sequence's first block
    *decoders, chunk = [(torch.randint(0, 256, (n,), generator=g).tolist(), list(range(a, b)))
                        for n, a, b in zip(lengths, first, first[1:])]
    steps = [[(*s, 0, len(s[0]) - 3) for s in decoders]]
    steps += [[(*s, len(s[0]) - k, 1) for s in decoders] for k in (3, 2)]
    steps.append([(*s, len(s[0]) - 1, 1) for s in decoders[:2]] + [(*chunk, 0, len(chunk[0]))])
    caches = [m.allocate_kv_cache(first[-1] + 1, BLOCK) for m in (ref, fast)]
    errs, agree = [], []
    for step in steps:
        with torch.inference_mode():
            want, got = (step_logits(m, cache, step) for m, cache in zip((ref, fast), caches))
        errs.append(rel_err(got, want))
        agree.append(got.argmax(-1) == want.argmax(-1))
    out["model_vs_torch"] = {"max_rel_err": max(errs), "tolerance": MODEL_TOLERANCE,
                             "argmax_agreement": float(torch.cat(agree).float().mean())}
    context = SZ["contexts"][0]
    cache, rows = random_cache(fast, 3, context), decode_rows(3, context)
    graphs = graphs_for(fast, cache, [4], context)  # held while its output is read
    replayed = fast.compute_logits(graphs.run(rows))
    step = [([5] * context, table, p, 1) for _, p, table in rows]  # the same writes to the cache
    graph_err = rel_err(replayed, step_logits(fast, cache, step))
    eager = graphs_for(fast, cache, [4], context, capture=False)
    params = SamplingParams(temperature=0.7, top_p=0.9, frequency_penalty=0.2)
    sampling = SamplingBatch([Sequence(f"s{i}", [1], params) for i in range(3)], DEVICE, None)
    sync_error = None
    if CUDA:
        torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.inference_mode():
            Sampler().choose(fast.compute_logits(eager.run(rows)), sampling)
    except RuntimeError as exc:  # a sync raises here on CUDA
        sync_error = str(exc)[:300]
    finally:
        if CUDA:
            torch.cuda.set_sync_debug_mode(0)
    out["graphs"] = {"graph_vs_plain_rel_err": graph_err, "host_sync_in_decode_step": sync_error}
    return max(errs + [graph_err]) < MODEL_TOLERANCE and sync_error is None


@torch.inference_mode()
def fp8_layers_vs_torch(out: dict) -> bool:
    """Each FP8 linear layer and the FP8 MoE of one V3-width layer, Triton against torch. Not the
    whole model: a few percent moves near-tied expert choices, which random weights amplify."""
    s = SZ["slice"]
    small = dict(num_hidden_layers=1, n_routed_experts=min(32, s["n_routed_experts"]),
                 num_attention_heads=min(8, s["num_attention_heads"]))
    ref, fast = (random_model(s, backend, 2, **small) for backend in ("torch", "triton"))
    fast_modules = dict(fast.named_modules())
    g = torch.Generator(device=DEVICE).manual_seed(8)
    errs = []
    for name, module in ref.named_modules():
        w = getattr(module, "weight", None)
        fp8 = isinstance(w, torch.Tensor) and w.dtype == torch.float8_e4m3fn
        if name.endswith(".mlp") or fp8:
            width = w.shape[1] if fp8 else s["hidden_size"]
            x = torch.randn(5, width, generator=g, device=DEVICE).to(DTYPE)
            errs.append(rel_err(fast_modules[name](x), module(x)))
    out["fp8_layers_vs_torch"] = {"max_rel_err": max(errs), "tolerance": FP8_TOLERANCE,
                                  "modules": len(errs)}
    return max(errs) < FP8_TOLERANCE


def decode_table(out: dict) -> None:
    """Decode steps of the bench model, graphs captured per context, and the peak memory at each;
    then a mixed step (64 decodes + one chunk) against that decode step + the chunk alone."""
    model = random_model(SZ["model"], "triton", 0)
    cache = random_cache(model, max(SZ["batches"]), max(SZ["contexts"]))
    out["decode"] = []
    for context in SZ["contexts"]:
        if CUDA:
            torch.cuda.reset_peak_memory_stats()
        graphs = graphs_for(model, cache, SZ["batches"], context)
        for batch in SZ["batches"]:
            rows = decode_rows(batch, context)
            ms = ms_per_call(lambda: model.compute_logits(graphs.run(rows)).argmax(-1))
            floor = roofline_bytes(model, batch, context) / out["copy_gbps"] / 1e6
            row = {"batch": batch, "ctx": context, "step ms": ms, "tok/s": batch / ms * 1000,
                   "roofline ms": floor, "% roofline": 100 * floor / ms}
            out["decode"].append({key: round(v, 3) for key, v in row.items()})
        if CUDA:
            out[f"peak_gib_at_ctx_{context}"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        del graphs
    context, decodes, chunk = SZ["contexts"][0], SZ["mid_batch"], SZ["chunk"]
    pure = next(r["step ms"] for r in out["decode"] if (r["batch"], r["ctx"]) == (decodes, context))
    first = decodes * -(-context // BLOCK)  # the first block past the decodes' tables
    chunk_step = [([7] * chunk, list(range(first, first + -(-chunk // BLOCK))), 0, chunk)]
    step = [([7] * context, t, p, 1) for _, p, t in decode_rows(decodes, context)] + chunk_step
    mixed = ms_per_call(lambda: step_logits(model, cache, step).argmax(-1))
    alone = ms_per_call(lambda: step_logits(model, cache, chunk_step).argmax(-1))
    out["mixed"] = {"mixed_ms": round(mixed, 3), "decode_ms": pure,
                    "chunk_alone_ms": round(alone, 3), "ratio": round(mixed / (pure + alone), 3)}


@torch.no_grad()
def transformers_ratio(out: dict) -> None:
    """Batch decode through transformers vs ours, the bench config cut to hf_layers, random weights
    in both (a step's time does not depend on their values; routing is near uniform in both)."""
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM as HFModel
    cfg = dict(SZ["model"], num_hidden_layers=SZ["hf_layers"])
    batch, context = SZ["mid_batch"], SZ["contexts"][0]
    ours = random_model(cfg, "triton", 5)
    graphs = graphs_for(ours, random_cache(ours, batch, context), [batch], context)
    rows = decode_rows(batch, context)
    ours_ms = ms_per_call(lambda: ours.compute_logits(graphs.run(rows)).argmax(-1))
    del ours, graphs
    with torch.device(DEVICE):  # initialised on the device: on the CPU, billions take minutes
        hf = HFModel(DeepseekV3Config(**{k: v for k, v in cfg.items() if k != "architectures"}))
    hf = hf.to(DTYPE).eval()
    prompt = torch.randint(0, cfg["vocab_size"], (batch, context - 1), device=DEVICE)
    kv = hf.model(input_ids=prompt, use_cache=True).past_key_values  # no [B, S, vocab] logits
    ids = torch.full((batch, 1), 5, device=DEVICE)

    def hf_step():
        pos = torch.full((batch, 1), kv.get_seq_length(), device=DEVICE)
        logits = hf(input_ids=ids, position_ids=pos, past_key_values=kv, use_cache=True).logits
        return logits[:, -1].argmax(-1)

    hf_ms = ms_per_call(hf_step, max(1, SZ["reps"] // 4))
    out["transformers"] = {"layers": cfg["num_hidden_layers"], "batch": batch, "context": context,
                           "ours_ms": round(ours_ms, 3), "transformers_ms": round(hf_ms, 3),
                           "speedup": round(hf_ms / ours_ms, 2)}


def v3_slice(out: dict) -> None:
    """Per-layer decode time of V3-width FP8 layers, extrapolated to EP8 on 8 GPUs: each GPU keeps
    its B sequences' attention and 1/8 of the experts, which get all 8 GPUs' routed tokens (~ our
    MoE at 8B tokens / 8); dispatch (e4m3) and combine (bf16) move B*k copies, 7/8 to other GPUs."""
    cfg, context, batches = SZ["slice"], SZ["contexts"][0], SZ["slice_batches"]
    model = random_model(cfg, "triton", 7)
    graphs = graphs_for(model, random_cache(model, max(batches), context), batches, context)
    moe, hidden, k = model.layers[0].mlp, cfg["hidden_size"], cfg["num_experts_per_tok"]
    head_ms = 129280 * 7168 * 2 / out["copy_gbps"] / 1e6  # V3's bf16 lm_head, read per step
    out["v3_slice_model"] = (
        f"{cfg['num_hidden_layers']} layers at ctx {context}; EP8 step = 61 x (ms/layer - MoE + "
        f"MoE(8B)/8 + comm) + head {head_ms:.3f} ms (dense layers as MoE); comm = 2 x "
        f"{A2A_LATENCY_US} us + B x {k} x 7/8 x {hidden} x 3 B / {NVLINK_GBPS} GB/s")
    out["v3_slice"] = []
    for batch in batches:
        rows = decode_rows(batch, context)
        layer_ms = ms_per_call(lambda: graphs.run(rows)) / cfg["num_hidden_layers"]  # no head
        x, x8 = (torch.randn(n, hidden, device=DEVICE, dtype=DTYPE) for n in (batch, 8 * batch))
        with torch.inference_mode():
            moe_ms, moe8_ms = ms_per_call(lambda: moe(x)), ms_per_call(lambda: moe(x8))
        comm_ms = 2 * A2A_LATENCY_US / 1000 + batch * k * 7 / 8 * hidden * 3 / NVLINK_GBPS / 1e6
        step_ms = 61 * (layer_ms - moe_ms + moe8_ms / 8 + comm_ms) + head_ms
        row = {"batch": batch, "ms/layer": layer_ms, "MoE ms": moe_ms, "MoE(8B) ms": moe8_ms,
               "comm ms": comm_ms, "EP8 step ms": step_ms, "tok/s per GPU": batch / step_ms * 1000}
        out["v3_slice"].append({key: round(v, 4) for key, v in row.items()})


SECTIONS = [  # (name, seconds it needs at least, function)
    ("model vs torch, graphs, syncs", 60, model_checks),
    ("fp8 layers vs torch", 20, fp8_layers_vs_torch),
    ("decode table, mixed step", 140, decode_table),
    ("transformers", 60, transformers_ratio),
    ("V3 FP8 slice", 90, v3_slice),
]


def markdown(key: str, value) -> str:
    """A list of rows as a table, anything else on one line."""
    if not (isinstance(value, list) and value and isinstance(value[0], dict)):
        return f"- {key}: {value if isinstance(value, str) else json.dumps(value)}"
    rows = [list(value[0]), ["---"] * len(value[0])] + [list(map(str, r.values())) for r in value]
    return f"\n{key}:\n\n" + "\n".join(f"| {' | '.join(row)} |" for row in rows) + "\n"


def finish(out: dict) -> None:
    body = [markdown(k, v) for k, v in out.items() if k not in ("date", "device")]
    print("\n".join(["", f"## {out['date']} — {out['device']}", ""] + body), flush=True)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "gpu_check.json"), "w") as f:
            json.dump(out, f, indent=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="CPU, Triton interpreter, toy sizes (CI)")
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="start no section that would not fit in this many seconds")
    args = ap.parse_args()
    deadline = time.monotonic() + args.budget_s
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True)
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "device": torch.cuda.get_device_name() if CUDA else "CPU (--tiny: not GPU figures)",
           "commit": git.stdout.strip() or os.environ.get("GIT_COMMIT", "unknown"),
           "torch": torch.__version__, "triton": triton.__version__, "skipped": [], "failed": []}
    src = torch.empty((64 if TINY else 4096) << 20, dtype=torch.uint8, device=DEVICE).random_()
    dst = torch.empty_like(src)
    copy_ms = ms_per_call(lambda: dst.copy_(src), reps=20)
    out["copy_gbps"] = round(2 * src.numel() / copy_ms / 1e6, 1)  # bytes read + written
    del src, dst

    def expire():  # a section far past the budget: report the others, then exit
        out["failed"].append(f"{name} (timeout)")
        try:
            finish(out)
        finally:
            os._exit(3)

    watchdog = threading.Timer(args.budget_s + 45, expire)  # cancelled below
    watchdog.start()
    for name, needs, section in SECTIONS:
        before, started = set(out), time.monotonic()
        if not TINY and deadline - started < needs:
            out["skipped"].append(name)
            continue
        try:
            if section(out) is False:
                out["failed"].append(name)
        except Exception:
            traceback.print_exc()
            out["failed"].append(name)
        if CUDA:
            torch.cuda.empty_cache()
        new = [markdown(k, out[k]) for k in out if k not in before]
        print(f"{name}: {time.monotonic() - started:.1f} s", *new, sep="\n", flush=True)
    watchdog.cancel()
    finish(out)
    return 1 if out["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
