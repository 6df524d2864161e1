"""Small building blocks: parameters without initialisation, RMSNorm, the SwiGLU MLP, the CPU matmul
backend choice for small steps."""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn


def empty_param(*shape: int, dtype: torch.dtype, device) -> nn.Parameter:
    """Weights are always filled by the loader, so skip the (slow, pointless) random init."""
    return nn.Parameter(torch.empty(*shape, dtype=dtype, device=device), requires_grad=False)


class RMSNorm(nn.Module):
    """x / rms(x), rounded to x's dtype, times weight (the references' rounding order).

    Computed as a layer norm of [x, -x]: that vector has zero mean, so its variance is mean(x^2) and
    the first half of its normalisation is x / sqrt(mean(x^2) + eps). Layer norm is one fused kernel
    accumulating in float32; F.rms_norm is a chain of ~8 small ops on CPU, which dominated the
    normalisations of a decode step (four per layer)."""

    def __init__(self, dim: int, eps: float, dtype: torch.dtype, device=None):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, dtype=dtype, device=device), requires_grad=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = x.shape[-1]
        symmetric = torch.cat((x, -x), dim=-1)
        return F.layer_norm(symmetric, (2 * dim,), eps=self.eps)[..., :dim] * self.weight


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)), with gate and up stored as one [2*inter, dim] matrix."""

    def __init__(self, dim: int, inter: int, dtype: torch.dtype, device=None):
        super().__init__()
        self.inter = inter
        self.gate_up_proj = empty_param(2 * inter, dim, dtype=dtype, device=device)
        self.down_proj = empty_param(dim, inter, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = linear(x, self.gate_up_proj).split(self.inter, dim=-1)
        return linear(F.silu(gate) * up, self.down_proj)

    def checkpoint_layout(self, prefix: str) -> dict[str, tuple[torch.Tensor, tuple]]:
        return {
            f"{prefix}.gate_proj.weight": (self.gate_up_proj, (slice(0, self.inter),)),
            f"{prefix}.up_proj.weight": (self.gate_up_proj, (slice(self.inter, 2 * self.inter),)),
            f"{prefix}.down_proj.weight": (self.down_proj, ()),
        }


# Up to this many tokens per step, CPU half-precision matmuls skip oneDNN (see `small_step_matmuls`).
SMALL_STEP_TOKENS = 4


def small_step_matmuls(tokens: int, dtype: torch.dtype, device: torch.device):
    """On CPU, oneDNN's bf16/fp16 matmul pays ~30 µs per call before any arithmetic: more than the whole
    product for a decode step's [few, 64] x [64, 96] projections, and a decoder layer has a dozen of them.
    ATen's own kernels (fp32 accumulation, like oneDNN's) cost a few µs there but lose on large
    products, so they are used only for steps of at most SMALL_STEP_TOKENS tokens. The flag is
    process-wide: the model must not run concurrently with other CPU matmuls that expect oneDNN."""
    if device.type == "cpu" and dtype in (torch.bfloat16, torch.float16) and tokens <= SMALL_STEP_TOKENS:
        return _without_onednn()
    return nullcontext()


@contextmanager
def _without_onednn():
    previous = torch.backends.mkldnn.set_flags(False, None, None, None)
    try:
        yield
    finally:
        torch.backends.mkldnn.set_flags(*previous)


# Small CPU half-precision products run in float32 on cached float32 copies of their weights (see `linear`).
WIDE_ROWS = 64  # at most this many input rows
WIDE_WEIGHT_ELEMENTS = 1 << 20  # weights of at most this many elements (4 MB as float32)


def widened(weight: torch.Tensor) -> torch.Tensor:
    """Cached float32 copy of `weight`, rebuilt when the weight changes in place (the loader fills
    parameters after construction). Kept on the weight itself, so it lives exactly as long."""
    key = (weight._version, weight.data_ptr())
    entry = getattr(weight, "_widened", None)
    if entry is None or entry[0] != key:
        entry = (key, weight.detach().float())
        weight._widened = entry
    return entry[1]


def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """F.linear(x, weight), the result rounded to x's dtype.

    On CPU, a bf16/fp16 product with few rows and a small weight runs in float32 against a cached float32
    copy of the weight: at decode sizes ATen's float32 GEMM costs a fraction of either half-precision
    kernel (e.g. [1, 48] x [48, 768]: 3.4 µs vs 8.5 µs ATen bf16 vs 14 µs oneDNN; at 32 rows 6 µs vs
    15 µs for [32, 64] x [64, 144]), and float32 products summed in float32, rounded once, are what a
    half-precision GEMM with float32 accumulation computes. Large weights (a real DeepSeek-V3's) keep the
    half-precision kernels and no copy."""
    if (
        x.device.type == "cpu"
        and x.dtype != torch.float32
        and weight.numel() <= WIDE_WEIGHT_ELEMENTS
        and x.numel() <= WIDE_ROWS * x.shape[-1]
    ):
        return F.linear(x.float(), widened(weight)).to(x.dtype)
    return F.linear(x, weight)


def first_argmax(x: torch.Tensor) -> torch.Tensor:
    """x [N, V] -> [N] index of each row's maximum (the first, on ties): x.argmax(-1), exactly.

    On CPU, argmax over bf16 rows is slow (~3 ns per element, not vectorised; 0.4 ms for one 129280-entry
    row) while a max reduction is fast, so: the max of each chunk of C entries, the first chunk holding the
    row's maximum (an argmax over V/C values), then the first maximum inside that chunk. About 30 chunks per
    row measured best (for 129280: 29 µs per row vs 440 µs bf16 argmax vs 84 µs float32 copy + argmax)."""
    rows, width = x.shape
    parts = next((n for n in (32, 40, 64, 128, 256) if width % n == 0), None)
    if x.device.type != "cpu" or parts is None or width < 4096:
        return x.argmax(dim=-1)
    chunk = width // parts
    chunks = x.reshape(rows, width // chunk, chunk)
    best = chunks.amax(dim=-1).float().argmax(dim=-1)  # [N] first chunk holding the maximum
    inside = chunks[torch.arange(rows, device=x.device), best].float().argmax(dim=-1)
    return best * chunk + inside
