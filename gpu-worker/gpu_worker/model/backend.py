"""Which kernels the model runs, chosen once at start-up: "torch" (the reference and oracle, any
device) or "triton" (CUDA, or the interpreter with TRITON_INTERPRET=1 as the tests run them)."""

from __future__ import annotations

import importlib
import os
from typing import Callable

import torch

KERNEL_BACKENDS = ("torch", "triton")


def resolve_kernel_backend(requested: str | None, device: torch.device | str) -> str:
    """`requested` (or $GPU_WORKER_KERNEL_BACKEND), else triton on CUDA and torch elsewhere."""
    device = torch.device(device)
    name = (requested or os.environ.get("GPU_WORKER_KERNEL_BACKEND")
            or ("triton" if device.type == "cuda" else "torch"))
    if name not in KERNEL_BACKENDS:
        raise ValueError(f"kernel backend {name!r}: expected one of {', '.join(KERNEL_BACKENDS)}")
    if name == "triton" and device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError("the triton kernel backend needs a CUDA device (or TRITON_INTERPRET=1)")
    return name


def triton_kernel(kernel_backend: str, module: str, name: str) -> Callable | None:
    """gpu_worker.kernels.<module>.<name> on the triton backend; None on the torch backend, whose
    layers run their reference code (and never import Triton)."""
    if kernel_backend != "triton":
        return None
    return getattr(importlib.import_module(f"gpu_worker.kernels.{module}"), name)
