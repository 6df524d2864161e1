"""Triton kernels, one file per kernel with its launcher. Their torch references live in the model
(gpu_worker/model), which picks one or the other once at start-up (model/backend.py)."""

import os

import torch


def widen_for_interpreter(x: torch.Tensor) -> bool:
    """Triton's interpreter multiplies bf16 bit patterns as integers in tl.dot: there the operands are
    widened to float32 first, which gives what a GPU's bf16 products with float32 sums give."""
    return x.dtype == torch.bfloat16 and os.environ.get("TRITON_INTERPRET") == "1"
