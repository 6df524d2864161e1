"""Small building blocks: parameters without initialisation, RMSNorm, the SwiGLU MLP."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gpu_worker.parallel.collectives import all_reduce
from gpu_worker.parallel.state import current


def empty_param(*shape: int, dtype: torch.dtype, device) -> nn.Parameter:
    """Weights are always filled by the loader, so skip the (slow, pointless) random init."""
    return nn.Parameter(torch.empty(*shape, dtype=dtype, device=device), requires_grad=False)


class RMSNorm(nn.Module):
    """x / rms(x) computed in float32, rounded to x's dtype, times weight (the references' rounding order)."""

    def __init__(self, dim: int, eps: float, dtype: torch.dtype, device=None):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, dtype=dtype, device=device), requires_grad=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = x.float()
        normed = wide * torch.rsqrt(wide.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return normed.to(x.dtype) * self.weight


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)), with gate and up stored as one [2*inter, dim] matrix.

    tensor_parallel: this rank holds a 1/N slice of the intermediate width (gate/up rows, down columns),
    so `partial` is this rank's share of the output and `forward` all-reduces it."""

    def __init__(self, dim: int, inter: int, dtype: torch.dtype, device=None, tensor_parallel: bool = False):
        super().__init__()
        self.part = current().part(inter, "intermediate size") if tensor_parallel else slice(0, inter)
        self.tensor_parallel = tensor_parallel
        self.inter = inter = self.part.stop - self.part.start
        self.gate_up_proj = empty_param(2 * inter, dim, dtype=dtype, device=device)
        self.down_proj = empty_param(dim, inter, dtype=dtype, device=device)

    def partial(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = F.linear(x, self.gate_up_proj).split(self.inter, dim=-1)
        return F.linear(F.silu(gate) * up, self.down_proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.partial(x)
        return all_reduce(out) if self.tensor_parallel else out

    def checkpoint_layout(self, prefix: str) -> dict[str, tuple]:
        """name -> (parameter, index of the slice it fills, this rank's slice of the checkpoint tensor)."""
        rows, cols = (self.part,), (slice(None), self.part)
        return {
            f"{prefix}.gate_proj.weight": (self.gate_up_proj, (slice(0, self.inter),), rows),
            f"{prefix}.up_proj.weight": (self.gate_up_proj, (slice(self.inter, 2 * self.inter),), rows),
            f"{prefix}.down_proj.weight": (self.down_proj, (), cols),
        }
