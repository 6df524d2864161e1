"""Worker configuration: command-line flags, each with an environment variable as default."""
from __future__ import annotations

import argparse
import os

import torch

from gpu_worker.engine.config import EngineConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _env(name: str, default=None):
    return os.environ.get(f"GPU_WORKER_{name}", default)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gpu_worker.server",
                                description="DeepSeek-V3-architecture inference worker (gateway protocol)")
    p.add_argument("--checkpoint", default=_env("CHECKPOINT"), help="checkpoint dir with config.json, "
                   "*.safetensors and tokenizer files [GPU_WORKER_CHECKPOINT]")
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="[GPU_WORKER_HOST]")
    p.add_argument("--port", type=int, default=int(_env("PORT", "8000")), help="[GPU_WORKER_PORT]")
    p.add_argument("--secret", default=_env("SECRET"), help="shared secret the gateway sends as "
                   "'Authorization: Bearer <secret>'; unset: no auth (development only) [GPU_WORKER_SECRET]")
    p.add_argument("--device", default=_env("DEVICE", "cuda" if torch.cuda.is_available() else "cpu"),
                   help="[GPU_WORKER_DEVICE]")
    p.add_argument("--dtype", default=_env("DTYPE"), choices=sorted(DTYPES),
                   help="default: bfloat16 on CUDA, float32 on CPU [GPU_WORKER_DTYPE]")
    p.add_argument("--num-cache-blocks", type=int, default=int(_env("NUM_CACHE_BLOCKS", "0")) or None,
                   help="64-token latent cache blocks; default from --memory-fraction on CUDA, 512 on CPU "
                        "[GPU_WORKER_NUM_CACHE_BLOCKS]")
    p.add_argument("--memory-fraction", type=float, default=float(_env("MEMORY_FRACTION", "0.9")),
                   help="share of free accelerator memory (after weights) for the cache [GPU_WORKER_MEMORY_FRACTION]")
    p.add_argument("--disk-cache-dir", default=_env("DISK_CACHE_DIR"),
                   help="directory of the prefix cache's disk tier; unset: no disk tier [GPU_WORKER_DISK_CACHE_DIR]")
    p.add_argument("--disk-cache-max-bytes", type=int, default=int(_env("DISK_CACHE_MAX_BYTES", str(10 * 2**30))),
                   help="[GPU_WORKER_DISK_CACHE_MAX_BYTES]")
    p.add_argument("--max-batch-tokens", type=int, default=int(_env("MAX_BATCH_TOKENS", "2048")),
                   help="tokens per forward step (decodes + prefill chunks) [GPU_WORKER_MAX_BATCH_TOKENS]")
    p.add_argument("--max-num-seqs", type=int, default=int(_env("MAX_NUM_SEQS", "256")), help="[GPU_WORKER_MAX_NUM_SEQS]")
    p.add_argument("--max-model-len", type=int, default=int(_env("MAX_MODEL_LEN", "65536")),
                   help="context length: prompt + max_tokens [GPU_WORKER_MAX_MODEL_LEN]")
    p.add_argument("--max-reasoning-tokens", type=int, default=int(_env("MAX_REASONING_TOKENS", "32768")),
                   help="deepseek-reasoner's chain-of-thought budget on top of max_tokens [GPU_WORKER_MAX_REASONING_TOKENS]")
    p.add_argument("--served-models", default=_env("SERVED_MODELS", "deepseek-chat,deepseek-reasoner"),
                   help="comma-separated model names this worker answers to [GPU_WORKER_SERVED_MODELS]")
    p.add_argument("--kernel-backend", choices=("torch", "triton"), default=None,
                   help="attention and MoE kernels: triton on CUDA, torch (the reference) elsewhere "
                        "[GPU_WORKER_KERNEL_BACKEND]")
    p.add_argument("--fp8-weights", choices=("keep", "dequantize"), default=_env("FP8_WEIGHTS", "") or None,
                   help="an FP8 checkpoint's weights: kept as e4m3 + block scales (the default with triton) or "
                        "widened to --dtype at load (the default with torch) [GPU_WORKER_FP8_WEIGHTS]")
    p.add_argument("--threads", type=int, default=int(_env("THREADS", "0")) or None,
                   help="torch CPU threads [GPU_WORKER_THREADS]")
    p.add_argument("--log-level", default=_env("LOG_LEVEL", "info"))
    p.add_argument("--tensor-parallel-size", type=int, default=int(_env("TENSOR_PARALLEL_SIZE", "1")),
                   help="ranks this worker starts: one per GPU on CUDA (NCCL), CPU processes otherwise (gloo); "
                        "heads, dense MLPs and the vocabulary are split over them [GPU_WORKER_TENSOR_PARALLEL_SIZE]")
    p.add_argument("--enable-expert-parallel", action="store_true",
                   default=_env("ENABLE_EXPERT_PARALLEL", "") not in ("", "0", "false"),
                   help="split the routed experts over the ranks by index (all-to-all dispatch) instead of "
                        "splitting every expert [GPU_WORKER_ENABLE_EXPERT_PARALLEL]")
    p.add_argument("--collective-timeout", type=float, default=float(_env("COLLECTIVE_TIMEOUT", "300")),
                   help="seconds a collective may wait for the other ranks before failing [GPU_WORKER_COLLECTIVE_TIMEOUT]")
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
    """--fp8-weights as load_model's keep_fp8 (None: the kernel backend's default)."""
    choice = getattr(args, "fp8_weights", None)
    return None if choice is None else choice == "keep"


def engine_config(args: argparse.Namespace, cache_salt: str) -> EngineConfig:
    # Expert parallelism sizes each all-to-all from counts read on the host at every MoE layer, which a
    # CUDA graph cannot capture: its decode steps run eagerly.
    expert_parallel = getattr(args, "enable_expert_parallel", False) and getattr(args, "tensor_parallel_size", 1) > 1
    return EngineConfig(num_cache_blocks=args.num_cache_blocks, memory_fraction=args.memory_fraction,
                        max_batch_tokens=args.max_batch_tokens, max_num_seqs=args.max_num_seqs,
                        max_model_len=args.max_model_len, disk_cache_dir=args.disk_cache_dir,
                        disk_cache_max_bytes=args.disk_cache_max_bytes, cache_salt=cache_salt,
                        cuda_graphs=not expert_parallel)
