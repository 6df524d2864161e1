"""Small decode steps (up to small_decode.COMPILED_TOKENS sequences) as one call into decode_kernel.cpp.

The torch-op small path (small_decode.py) is ~400 ops of ~2.7 us each at batch 1, for ~0.1 MFLOP of
arithmetic per layer: the ops' fixed cost is the step. The kernel runs the same maths over the same folded
weights (decode_weights.py) as plain loops, every layer in one call, all float32; steps of many sequences
in chunks on torch's OpenMP threads when that pays (decode_threads.py), others on the calling thread.

`CompiledDecode.build` packs the folded layers into the kernel's descriptors (pointers into the folded
tensors, which SmallDecode keeps alive with them); it is None when the kernel is unavailable (no compiler,
GPU_WORKER_COMPILED_DECODE=0) or the model is one it does not take (float16, sizes past its bounds), and
the caller keeps the torch-op path. Which path small decodes take is logged once per process.

The expert gate/up stacks are passed transposed ([E + S, dim, 2 * inter], a copy made here): the kernel
multiplies several tokens by one expert at once, which wants rows of the input dimension.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from pathlib import Path

import torch

from . import native
from .decode_threads import CHUNK_TOKENS, ThreadChoice
from .decode_weights import FoldedMoE

log = logging.getLogger("gpu_worker.model")

SOURCE = Path(__file__).with_name("decode_kernel.cpp")
SUPPORTED_DTYPES = (torch.float32, torch.bfloat16)

_ptr = ctypes.c_void_p
_i32, _i64, _f32 = ctypes.c_int32, ctypes.c_int64, ctypes.c_float


class LayerDesc(ctypes.Structure):  # decode_kernel.cpp's LayerDesc, field for field
    _fields_ = [(name, _ptr) for name in (
        "qkv", "kv_gain", "query", "out", "mlp_gate_up", "mlp_down", "router", "bias", "gain",
        "expert_gate_up", "expert_down")] + [("moe", _i32), ("unused", _i32)]


class ModelDesc(ctypes.Structure):  # decode_kernel.cpp's ModelDesc
    _fields_ = [("layers", ctypes.POINTER(LayerDesc)), ("eps", _f32), ("kv_eps", _f32), ("scale", _f32)] + [
        (name, _i32) for name in (
            "n_layers", "dim", "heads", "rank", "rope", "q_cols", "q_norm", "inter", "experts", "shared",
            "expert_inter", "top_k", "n_group", "topk_group", "normalise", "vocab", "max_positions")]


STEP_ARGS = [ctypes.POINTER(ModelDesc), _i32, _ptr, _ptr, _ptr, _ptr, _ptr, _i32, _i32, _ptr, _ptr, _i32,
             _ptr, _i32, _i64, _ptr, _ptr, _i64, _i32, _i32, ctypes.POINTER(_i64)]
ERRORS = {-1: "token id out of range", -2: "position past max_position_embeddings",
          -3: "context longer than its block table", -4: "cache slot or block out of range"}

_library: ctypes.CDLL | None = None
_loaded = False


def _build() -> tuple[ctypes.CDLL, bool]:
    """(library, whether it runs steps on OpenMP threads). With OpenMP where torch has it; where that
    build fails (a compiler without OpenMP), without: every step then runs on the calling thread."""
    if not torch.backends.openmp.is_available():
        return native.load(SOURCE), False
    try:
        return native.load(SOURCE, openmp=True), True
    except native.NativeBuildError as e:
        lib = native.load(SOURCE)
        log.info("small decode: compiled kernel without OpenMP, one thread per step (%s)", e)
        return lib, False


def _load() -> ctypes.CDLL | None:
    """The kernel library, built if needed; None (logged) when it cannot be had."""
    if os.environ.get("GPU_WORKER_COMPILED_DECODE", "1") == "0":
        log.info("small decode: torch ops (compiled kernel disabled by GPU_WORKER_COMPILED_DECODE=0)")
        return None
    start = time.perf_counter()
    try:
        lib, openmp = _build()
    except native.NativeBuildError as e:
        log.warning("small decode: torch ops (compiled kernel unavailable: %s)", e)
        return None
    lib.decode_kernel_step.argtypes = STEP_ARGS
    lib.decode_kernel_step.restype = _i64
    sizes = (lib.decode_kernel_layer_desc_size(), lib.decode_kernel_model_desc_size())
    if sizes != (ctypes.sizeof(LayerDesc), ctypes.sizeof(ModelDesc)):
        log.warning("small decode: torch ops (kernel descriptors %s do not match ctypes' %s)", sizes,
                    (ctypes.sizeof(LayerDesc), ctypes.sizeof(ModelDesc)))
        return None
    log.info("small decode: compiled kernel (%s, ready in %.2f s)",
             " ".join(native.compiler_flags(openmp)), time.perf_counter() - start)
    return lib


def library() -> ctypes.CDLL | None:
    global _library, _loaded
    if not _loaded:
        _library, _loaded = _load(), True
    return _library


def _address(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class CompiledDecode:
    """The kernel's descriptors for one fold of a model's layers, and its step."""

    @classmethod
    def build(cls, model, layers) -> CompiledDecode | None:
        lib = library()
        if (lib is None or model.dtype not in SUPPORTED_DTYPES or not model.rotary.freqs.is_contiguous()
                or not model.embed_tokens.is_contiguous()):
            return None
        moe = next((f.mlp for f in layers if isinstance(f.mlp, FoldedMoE)), None)
        if moe is not None and (moe.router.shape[1] + moe.n_shared > lib.decode_kernel_max_experts()
                                or moe.n_group > lib.decode_kernel_max_groups()):
            return None
        return cls(lib, model, layers, moe)

    def __init__(self, lib, model, layers, moe: FoldedMoE | None):
        self.step = lib.decode_kernel_step
        self.model = model
        self.dtype = model.dtype
        c = model.config
        self.keep = []  # tensors made here that the descriptors point into
        descs = (LayerDesc * len(layers))()
        for desc, folded in zip(descs, layers):
            a, mlp = folded.attn, folded.mlp
            kv_gain = a.segment_spread[1, a.q_cols : a.q_cols + a.rank].contiguous()
            self.keep.append(kv_gain)
            desc.qkv, desc.kv_gain, desc.query, desc.out = map(_address, (a.qkv, kv_gain, a.query, a.out))
            if isinstance(mlp, FoldedMoE):
                desc.moe = 1
                gate_up_t = mlp.gate_up.transpose(1, 2).contiguous()  # [E + S, dim, 2 * inter]: x @ it per expert
                self.keep.append(gate_up_t)
                desc.router, desc.bias, desc.gain, desc.expert_gate_up, desc.expert_down = map(
                    _address, (mlp.router, mlp.bias, mlp.gain, gate_up_t, mlp.down_t))
            else:
                desc.mlp_gate_up, desc.mlp_down = _address(mlp.gate_up), _address(mlp.down)
        a = layers[0].attn
        self.desc = ModelDesc(
            layers=descs, eps=layers[0].eps, kv_eps=float(a.segment_eps[0, 0]),
            scale=moe.scale if moe else 1.0, n_layers=len(layers), dim=c.hidden_size, heads=a.heads,
            rank=a.rank, rope=a.entry_width - a.rank, q_cols=a.q_cols, q_norm=a.query is not None,
            inter=c.intermediate_size, experts=moe.router.shape[1] if moe else 0,
            shared=moe.n_shared if moe else 0, expert_inter=moe.inter if moe else 0,
            top_k=moe.top_k if moe else 0, n_group=moe.n_group if moe else 1,
            topk_group=moe.topk_group if moe else 1, normalise=moe.normalise if moe else 0,
            vocab=c.vocab_size, max_positions=model.rotary.freqs.shape[0])
        self.descs = descs
        self.desc_ref = ctypes.byref(self.desc)
        self.scratch = torch.empty(0)  # grown to what the kernel asks for
        self.timing = (_i64 * 4)()  # the threads a step ran on, and their timing (decode_kernel.cpp, run_chunks)
        self.thread_choice = ThreadChoice()

    def __call__(self, input_ids, positions, meta, kv_cache: torch.Tensor) -> torch.Tensor | None:
        """As SmallDecode.forward; None when the cache is not one the kernel takes (torch ops then)."""
        if (kv_cache.dtype not in SUPPORTED_DTYPES or not kv_cache.is_contiguous()
                or kv_cache.shape[0] != self.desc.n_layers or kv_cache.shape[-1] != self.desc.rank + self.desc.rope):
            return None
        ints = [t if t.dtype == torch.long and t.is_contiguous() else t.long().contiguous() for t in (
            input_ids, positions, meta.slot_mapping, meta.context_lens, meta.block_tables)]
        ids, positions, slots, lengths, tables = ints
        batch = ids.shape[0]
        out = torch.empty(batch, self.desc.dim, dtype=self.dtype)
        model = self.model
        args = [self.desc_ref, batch, ids.data_ptr(), positions.data_ptr(), slots.data_ptr(),
                lengths.data_ptr(), tables.data_ptr(), tables.shape[1], meta.block_size,
                model.embed_tokens.data_ptr(), model.rotary.freqs.data_ptr(), self.dtype == torch.bfloat16,
                kv_cache.data_ptr(), kv_cache.dtype == torch.bfloat16, kv_cache.shape[1], out.data_ptr(),
                self.scratch.data_ptr(), self.scratch.numel(), self.thread_choice.threads(batch), CHUNK_TOKENS,
                self.timing]
        code = self.step(*args)
        if code > 0:  # the scratch buffer is too small (first step, or a longer context): grow, run again
            self.scratch = torch.empty(max(code, 2 * self.scratch.numel()))
            args[16:18] = self.scratch.data_ptr(), self.scratch.numel()
            code = self.step(*args)
        if code < 0:
            raise IndexError(f"compiled decode step: {ERRORS.get(code, code)}")
        threads, work_ns, wait_ns, own_chunks = self.timing
        if threads > 1:
            self.thread_choice.record(work_ns, wait_ns, own_chunks)
        return out
