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
        gate, up = F.linear(x, self.gate_up_proj).split(self.inter, dim=-1)
        return F.linear(F.silu(gate) * up, self.down_proj)

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
