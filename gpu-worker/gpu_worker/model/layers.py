"""Building blocks: uninitialised parameters, RMSNorm, Linear (model dtype or FP8), SwiGLU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gpu_worker.parallel.collectives import all_reduce
from gpu_worker.parallel.state import current

from . import fp8
from .backend import triton_kernel


def empty_param(*shape: int, dtype: torch.dtype, device) -> nn.Parameter:
    """Weights are always filled by the loader, so skip the (slow, pointless) random init."""
    return nn.Parameter(torch.empty(*shape, dtype=dtype, device=device), requires_grad=False)


class RMSNorm(nn.Module):
    """x / rms(x) in float32, rounded to x's dtype, times weight (the references' rounding)."""

    def __init__(self, dim: int, eps: float, dtype: torch.dtype, device=None):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, dtype=dtype, device=device), requires_grad=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = x.float()
        normed = wide * torch.rsqrt(wide.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return normed.to(x.dtype) * self.weight


class Linear(nn.Module):
    """x @ W^T, W [out, in] in the model dtype or e4m3 with 128x128 block scales (Triton: W8A8;
    torch: dequantise first). split: W is two checkpoint tensors stacked along rows (gate/up,
    q_a/kv_a), the first `split` rows long, each with its own blocks."""

    def __init__(self, out_features: int, in_features: int, dtype: torch.dtype, device=None,
                 quantized: bool = False, split: int | None = None, kernel_backend: str = "torch"):
        super().__init__()
        self.split = split
        self.w8a8 = triton_kernel(kernel_backend, "fp8_gemm", "w8a8_linear") if quantized else None
        weight_dtype = fp8.FP8_DTYPE if quantized else dtype
        self.weight = empty_param(out_features, in_features, dtype=weight_dtype, device=device)
        self.weight_scale_inv = None
        if quantized:
            rows = fp8.blocks(out_features) if split is None else (
                fp8.blocks(split) + fp8.blocks(out_features - split))
            self.weight_scale_inv = empty_param(rows, fp8.blocks(in_features), dtype=torch.float32,
                                                device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.w8a8:
            return self.w8a8(x, self.weight, self.weight_scale_inv, self.split)
        return F.linear(x, self.dequantized(x.dtype))

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        if self.weight_scale_inv is None:
            return self.weight
        return fp8.dequantize(self.weight, self.weight_scale_inv, dtype, split=self.split)

    def entries(self, name: str, rows: slice | None = None, source: tuple = ()) -> dict[str, tuple]:
        """Layout entries of checkpoint tensor `name` (its `source` part) filling `rows` of W (all
        of W when None), and of its scales when W is FP8."""
        index = () if rows is None else (rows,)
        out = {name: (self.weight, index, source)}
        if self.weight_scale_inv is not None:
            scale_index = () if rows is None else (fp8.block_slice(rows, self.split),)
            out[name + "_scale_inv"] = (self.weight_scale_inv, scale_index, fp8.block_source(source))
        return out


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)), gate and up one [2*inter, dim] matrix. tensor_parallel: this
    rank holds 1/N of the width, so `partial` is its share, which `forward` all-reduces."""

    def __init__(self, dim: int, inter: int, dtype: torch.dtype, device=None, tensor_parallel: bool = False,
                 quantized: bool = False, kernel_backend: str = "torch"):
        super().__init__()
        self.part = current().part(inter, "intermediate size") if tensor_parallel else slice(0, inter)
        self.tensor_parallel = tensor_parallel
        self.inter = inter = self.part.stop - self.part.start
        self.gate_up_proj = Linear(2 * inter, dim, dtype, device, quantized, split=inter, kernel_backend=kernel_backend)
        self.down_proj = Linear(dim, inter, dtype, device, quantized, kernel_backend=kernel_backend)

    def partial(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).split(self.inter, dim=-1)
        return self.down_proj(F.silu(gate) * up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.partial(x)
        return all_reduce(out) if self.tensor_parallel else out

    def checkpoint_layout(self, prefix: str) -> dict[str, tuple]:
        rows, cols = (self.part,), (slice(None), self.part)
        return {
            **self.gate_up_proj.entries(f"{prefix}.gate_proj.weight", slice(0, self.inter), rows),
            **self.gate_up_proj.entries(f"{prefix}.up_proj.weight", slice(self.inter, 2 * self.inter), rows),
            **self.down_proj.entries(f"{prefix}.down_proj.weight", None, cols),
        }
