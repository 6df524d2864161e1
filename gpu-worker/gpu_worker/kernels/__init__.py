"""Triton kernels, one file per kernel with its launcher; their torch references live in
gpu_worker/model. This file imports no Triton: the torch backend never loads it."""

import os

import torch

# FP8 (DeepSeek-V3's layout): a weight scale per 128x128 block, an activation scale per 1x128 group
BLOCK = 128


def dot_width(n: int) -> int:
    """Lanes of a tile dimension holding n: tl.dot needs every dimension >= 16 (padding masked)."""
    return max(16, 1 << (n - 1).bit_length())


def dot_precision(x: torch.Tensor) -> str:
    """float32 models get float32 products; tl.dot ignores the setting for narrower inputs."""
    return "ieee" if x.dtype == torch.float32 else "tf32"


def widen_for_interpreter(x: torch.Tensor) -> bool:
    """Triton's interpreter multiplies bf16 bit patterns as integers in tl.dot: there the operands are
    widened to float32 first, which gives what a GPU's bf16 products with float32 sums give."""
    return x.dtype == torch.bfloat16 and os.environ.get("TRITON_INTERPRET") == "1"
