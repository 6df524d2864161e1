"""Compile the MLA, MoE and FP8 kernels for an H100/H200 (sm_90) without a GPU: Triton's compiler and the
ptxas it ships run on any machine, so what only the GPU build rejects (an fp8 dot shape, an early
return, a type the interpreter lets through) fails here too. Run as a script, without TRITON_INTERPRET
(test_compile_sm90.py does); prints one line per kernel and exits 1 if any fails."""

import os
import sys

os.environ.pop("TRITON_INTERPRET", None)

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from gpu_worker.kernels import fp8_gemm, fused_moe, mla_decode, mla_prefill, router  # noqa: E402

SM90 = GPUTarget("cuda", 90, 32)


def moe_signature(fp8: bool) -> dict:
    act = "*fp8e4nv" if fp8 else "*bf16"
    pointers = dict(a_ptr=act, a_scale_ptr="*fp32", w_ptr=act, w_scale_ptr="*fp32", shared_w_ptr=act,
                    shared_w_scale_ptr="*fp32", out_ptr="*bf16", pairs_ptr="*i64", block_experts_ptr="*i64",
                    route_weights_ptr="*fp32")
    ints = ("num_experts num_pairs N K pairs_per_a_row split_row split_scale_row stride_am stride_asm stride_we "
            "stride_wn stride_wse stride_wsn stride_om").split()
    return {**pointers, **dict.fromkeys(ints, "i32")}


def moe_constants(fp8: bool, swiglu: bool, block_m: int) -> dict:
    return dict(SWIGLU=swiglu, ROUTE_WEIGHT=not swiglu, FP8=fp8, PRECISION=None, WIDEN=False, BLOCK_M=block_m,
                BLOCK_N=64, BLOCK_K=128 if fp8 else 64)


W8A8 = dict(a_ptr="*fp8e4nv", as_ptr="*fp32", b_ptr="*fp8e4nv", bs_ptr="*fp32", c_ptr="*bf16",
            **dict.fromkeys("M N K SPLIT_ROW SPLIT_SCALE_ROW stride_am stride_asm stride_bn stride_bsn stride_cm".split(), "i32"))
ACT_QUANT = dict(x_ptr="*bf16", q_ptr="*fp8e4nv", s_ptr="*fp32",
                 **dict.fromkeys("M K groups_per_row stride_xm stride_qm stride_sm".split(), "i32"))
MLA_DECODE = dict(q_ptr="*bf16", cache_ptr="*bf16", tables_ptr="*i64", lens_ptr="*i64", part_ptr="*fp32", lse_ptr="*fp32",
                  **dict.fromkeys(("q_stride_b q_stride_h entry_stride table_stride part_stride_b part_stride_h "
                                   "part_stride_s lse_stride_b lse_stride_h num_heads num_splits").split(), "i32"))
MLA_DECODE_CONSTANTS = dict(R=512, PE=64, PAGE=64, BLOCK_R=512, BLOCK_PE=64, BLOCK_H=16, BLOCK_N=32, PRECISION="tf32",
                            WIDEN=False)
MLA_MERGE = dict(part_ptr="*fp32", lse_ptr="*fp32", out_ptr="*bf16",
                 **dict.fromkeys(("part_stride_b part_stride_h part_stride_s lse_stride_b lse_stride_h out_stride_b "
                                  "out_stride_h num_splits").split(), "i32"))
MLA_PREFILL = dict(qn_ptr="*bf16", qp_ptr="*bf16", kn_ptr="*bf16", kp_ptr="*bf16", v_ptr="*bf16", out_ptr="*bf16",
                   cu_q_ptr="*i32", cu_k_ptr="*i32", scale_log2="fp32",
                   **dict.fromkeys(("qn_stride_t qn_stride_h qp_stride_t qp_stride_h kn_stride_t kn_stride_h "
                                    "kp_stride_t v_stride_t v_stride_h out_stride_t out_stride_h").split(), "i32"))
ROUTER = dict(logits_ptr="*fp32", bias_ptr="*fp32", weights_ptr="*fp32", ids_ptr="*i64", tokens="i32",
              stride_t="i32", scale="fp32")

# (name, kernel, signature, constants): the shapes the launchers pick for DeepSeek-V3 decode and prefill
KERNELS = [
    ("mla decode split-K", mla_decode._decode_kernel, MLA_DECODE, MLA_DECODE_CONSTANTS),
    ("mla decode direct", mla_decode._decode_kernel, {**MLA_DECODE, "part_ptr": "*bf16"}, MLA_DECODE_CONSTANTS),
    ("mla split merge", mla_decode._merge_kernel, MLA_MERGE, dict(R=512, BLOCK_R=512, BLOCK_S=8)),
    ("mla prefill", mla_prefill._prefill_kernel, MLA_PREFILL,
     dict(NOPE=128, PE=64, V=128, BLOCK_NOPE=128, BLOCK_PE=64, BLOCK_V=128, BLOCK_M=64, BLOCK_N=64, PRECISION="tf32",
          WIDEN=False)),
    ("act_quant", fp8_gemm._act_quant_kernel, ACT_QUANT, dict(GROUPS=16, GROUP_SIZE=128)),
    ("w8a8 decode tile", fp8_gemm._w8a8_gemm_kernel, W8A8, dict(BLOCK_M=16, BLOCK_N=64, BLOCK_K=128)),
    ("w8a8 prefill tile", fp8_gemm._w8a8_gemm_kernel, W8A8, dict(BLOCK_M=64, BLOCK_N=128, BLOCK_K=128)),
    ("router 256 experts, 8 groups keep 4, top-8", router._router_kernel, ROUTER,
     dict(N_GROUP=8, GROUP_SIZE=32, TOPK_GROUP=4, TOP_K=8, BLOCK_T=4, G_PAD=8, S_PAD=32, K_PAD=8,
          LIMIT_GROUPS=True, NORMALISE=True)),
    ("moe bf16 gate_up", fused_moe._expert_gemm_kernel, moe_signature(False), moe_constants(False, True, 16)),
    ("moe fp8 gate_up", fused_moe._expert_gemm_kernel, moe_signature(True), moe_constants(True, True, 16)),
    ("moe fp8 down", fused_moe._expert_gemm_kernel, moe_signature(True), moe_constants(True, False, 64)),
]


def main() -> int:
    failed = 0
    for name, kernel, signature, constants in KERNELS:
        try:
            source = ASTSource(fn=kernel, signature={**signature, **dict.fromkeys(constants, "constexpr")},
                               constexprs=constants)
            triton.compile(source, target=SM90)
            print(f"OK {name}")
        except Exception as error:  # noqa: BLE001 - report every kernel, then fail
            failed += 1
            print(f"FAILED {name}: {type(error).__name__}: {error}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
