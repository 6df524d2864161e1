"""The MLA, MoE and FP8 kernels build for an H100/H200 (sm_90), checked without a GPU: Triton's
compiler and the ptxas it ships run on any machine, so what only the GPU build rejects (an fp8 dot
shape, an early return, a type the interpreter lets through) fails here too. The test runs this file
as a script without TRITON_INTERPRET, which prints one line per kernel and exits 1 if any fails."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER_ROOT = Path(__file__).resolve().parents[2]

# argument types that differ from the default: *bf16 for a pointer (name *_ptr), i32 for the rest
DECODE = dict(tables_ptr="*i64", lens_ptr="*i64", part_ptr="*fp32", lse_ptr="*fp32")
DECODE_CONSTANTS = dict(R=512, PE=64, PAGE=64, BLOCK_R=512, BLOCK_PE=64, BLOCK_H=16, BLOCK_N=32,
                        PRECISION="tf32", WIDEN=False)
FP8 = dict(a_ptr="*fp8e4nv", w_ptr="*fp8e4nv", shared_w_ptr="*fp8e4nv", b_ptr="*fp8e4nv",
           a_scale_ptr="*fp32", w_scale_ptr="*fp32", shared_w_scale_ptr="*fp32", as_ptr="*fp32",
           bs_ptr="*fp32")
MOE = dict(pairs_ptr="*i64", block_experts_ptr="*i64", route_weights_ptr="*fp32")
MOE_BF16 = dict(MOE, a_scale_ptr="*fp32", w_scale_ptr="*fp32", shared_w_scale_ptr="*fp32")


def moe_constants(fp8: bool, swiglu: bool, block_m: int) -> dict:
    return dict(SWIGLU=swiglu, ROUTE_WEIGHT=not swiglu, FP8=fp8, PRECISION="tf32", WIDEN=False,
                BLOCK_M=block_m, BLOCK_N=64, BLOCK_K=128 if fp8 else 64)


# (name, kernels module and kernel, argument types, constants): what the launchers pick for
# DeepSeek-V3 decode and prefill
KERNELS = [
    ("mla decode split-K", "mla_decode._decode_kernel", DECODE, DECODE_CONSTANTS),
    ("mla decode direct", "mla_decode._decode_kernel", dict(DECODE, part_ptr="*bf16"),
     DECODE_CONSTANTS),
    ("mla split merge", "mla_decode._merge_kernel", dict(part_ptr="*fp32", lse_ptr="*fp32"),
     dict(R=512, BLOCK_R=512, BLOCK_S=8)),
    ("mla prefill", "mla_prefill._prefill_kernel",
     dict(cu_q_ptr="*i32", cu_k_ptr="*i32", scale_log2="fp32"),
     dict(NOPE=128, PE=64, V=128, BLOCK_NOPE=128, BLOCK_PE=64, BLOCK_V=128, BLOCK_M=64, BLOCK_N=64,
          PRECISION="tf32", WIDEN=False)),
    ("act_quant", "fp8_gemm._act_quant_kernel", dict(q_ptr="*fp8e4nv", s_ptr="*fp32"),
     dict(GROUPS=16, GROUP_SIZE=128)),
    ("w8a8 decode tile", "fp8_gemm._w8a8_gemm_kernel", FP8,
     dict(BLOCK_M=16, BLOCK_N=64, BLOCK_K=128)),
    ("w8a8 prefill tile", "fp8_gemm._w8a8_gemm_kernel", FP8,
     dict(BLOCK_M=64, BLOCK_N=128, BLOCK_K=128)),
    ("router 256 experts, 8 groups keep 4, top-8", "router._router_kernel",
     dict(logits_ptr="*fp32", bias_ptr="*fp32", weights_ptr="*fp32", ids_ptr="*i64", scale="fp32"),
     dict(N_GROUP=8, GROUP_SIZE=32, TOPK_GROUP=4, TOP_K=8, BLOCK_T=4, G_PAD=8, S_PAD=32, K_PAD=8,
          LIMIT_GROUPS=True, NORMALISE=True)),
    ("moe bf16 gate_up", "fused_moe._expert_gemm_kernel", MOE_BF16, moe_constants(False, True, 16)),
    ("moe fp8 gate_up", "fused_moe._expert_gemm_kernel", dict(FP8, **MOE),
     moe_constants(True, True, 16)),
    ("moe fp8 down", "fused_moe._expert_gemm_kernel", dict(FP8, **MOE),
     moe_constants(True, False, 64)),
]


def test_kernels_compile_for_sm90(tmp_path):
    pytest.importorskip("triton.backends.nvidia")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path), PYTHONPATH=str(WORKER_ROOT),
               TRITON_DEFAULT_FP_FUSION="1")
    result = subprocess.run([sys.executable, __file__], cwd=WORKER_ROOT, env=env,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert result.stdout.count("OK ") == len(KERNELS), result.stdout


def compile_all() -> int:
    os.environ.pop("TRITON_INTERPRET", None)  # before any kernel is defined
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    failed = 0
    for name, path, types, constants in KERNELS:
        module, function = path.split(".")
        kernel = getattr(importlib.import_module(f"gpu_worker.kernels.{module}"), function)
        signature = {arg: types.get(arg, "*bf16" if arg.endswith("_ptr") else "i32")
                     for arg in kernel.arg_names}
        signature.update(dict.fromkeys(constants, "constexpr"))
        try:
            source = ASTSource(fn=kernel, signature=signature, constexprs=constants)
            triton.compile(source, target=GPUTarget("cuda", 90, 32))
            print(f"OK {name}")
        except Exception as error:  # noqa: BLE001 - report every kernel, then fail
            failed += 1
            print(f"FAILED {name}: {type(error).__name__}: {error}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(compile_all())
