"""Worker configuration: command-line flags, each with an environment variable as default."""
from __future__ import annotations

import argparse
import os

import torch

from gpu_worker.engine.config import EngineConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gpu_worker.server",
                                description="DeepSeek-V3-architecture inference worker (gateway protocol)")

    def option(flag: str, help_: str = "", type_=str, default=None, env: bool = True, **kw) -> None:
        """--flag, whose default $GPU_WORKER_FLAG (parsed as type_) overrides when set."""
        var = "GPU_WORKER_" + flag.upper().replace("-", "_")
        value = os.environ.get(var) if env else None
        p.add_argument(f"--{flag}", type=type_, default=default if value is None else type_(value),
                       help=f"{help_} [{var}]".lstrip(), **kw)

    option("checkpoint", "checkpoint dir with config.json, *.safetensors and tokenizer files")
    option("host", default="127.0.0.1")
    option("port", type_=int, default=8000)
    option("secret", "shared secret the gateway sends as 'Authorization: Bearer <secret>'; unset: "
           "no auth (development only)")
    option("device", default="cuda" if torch.cuda.is_available() else "cpu")
    option("dtype", "default: bfloat16 on CUDA, float32 on CPU", choices=sorted(DTYPES))
    option("num-cache-blocks", "64-token latent cache blocks; default from --memory-fraction on "
           "CUDA, 512 on CPU", int)
    option("memory-fraction", "share of free accelerator memory (after weights) for the cache",
           float, 0.9)
    option("disk-cache-dir", "directory of the prefix cache's disk tier; unset: no disk tier")
    option("disk-cache-max-bytes", type_=int, default=10 * 2**30)
    option("max-batch-tokens", "tokens per forward step (decodes + prefill chunks)", int, 2048)
    option("max-num-seqs", type_=int, default=256)
    option("max-model-len", "context length: prompt + max_tokens", int, 65536)
    option("max-reasoning-tokens", "deepseek-reasoner's chain-of-thought budget on top of "
           "max_tokens", int, 32768)
    option("served-models", "comma-separated model names this worker answers to",
           default="deepseek-chat,deepseek-reasoner")
    # Read by the model itself when the flag is not given (gpu_worker.model.backend).
    option("kernel-backend", "attention and MoE kernels: triton on CUDA, torch (the reference) "
           "elsewhere", choices=("torch", "triton"), env=False)
    option("fp8-weights", "an FP8 checkpoint's weights: kept as e4m3 + block scales (the default "
           "with triton) or widened to --dtype at load (the default with torch)",
           choices=("keep", "dequantize"))
    option("threads", "torch CPU threads", int)
    option("log-level", default="info")
    option("tensor-parallel-size", "ranks this worker starts: one per GPU on CUDA (NCCL), CPU "
           "processes otherwise (gloo); heads, dense MLPs and the vocabulary are split over them",
           int, 1)
    expert_parallel = os.environ.get("GPU_WORKER_ENABLE_EXPERT_PARALLEL", "")
    p.add_argument("--enable-expert-parallel", action="store_true",
                   default=expert_parallel not in ("", "0", "false"),
                   help="split the routed experts over the ranks by index (all-to-all dispatch) "
                        "instead of splitting every expert [GPU_WORKER_ENABLE_EXPERT_PARALLEL]")
    option("collective-timeout", "seconds a collective may wait for the other ranks before failing",
           float, 300.0)
    p.add_argument("--parent-pid", type=int, default=None,
                   help="exit when this process is gone (a launcher killed with SIGKILL leaves no orphan on the port)")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    args = parser().parse_args(argv)
    if not args.checkpoint:
        parser().error("--checkpoint (or GPU_WORKER_CHECKPOINT) is required")
    if args.dtype is None:
        args.dtype = "bfloat16" if str(args.device).startswith("cuda") else "float32"
    args.served_models = [m.strip() for m in args.served_models.split(",") if m.strip()]
    if args.tensor_parallel_size < 1:
        parser().error("--tensor-parallel-size must be at least 1")
    if str(args.device).startswith("cuda") and args.tensor_parallel_size > torch.cuda.device_count():
        parser().error(f"--tensor-parallel-size {args.tensor_parallel_size} needs as many GPUs; "
                       f"{torch.cuda.device_count()} visible")
    return args


def keep_fp8(args: argparse.Namespace) -> bool | None:
    """--fp8-weights as load_model's keep_fp8 (None or empty: the kernel backend's default)."""
    return args.fp8_weights == "keep" if args.fp8_weights else None


def engine_config(args: argparse.Namespace, cache_salt: str) -> EngineConfig:
    return EngineConfig(num_cache_blocks=args.num_cache_blocks, memory_fraction=args.memory_fraction,
                        max_batch_tokens=args.max_batch_tokens, max_num_seqs=args.max_num_seqs,
                        max_model_len=args.max_model_len, disk_cache_dir=args.disk_cache_dir,
                        disk_cache_max_bytes=args.disk_cache_max_bytes, cache_salt=cache_salt)
