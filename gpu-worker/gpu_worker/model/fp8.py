"""FP8 (e4m3) block quantization as in DeepSeek-V3 checkpoints: one float32 `weight_scale_inv` per
block (128x128), weight = fp8_block * scale_inv. Ragged edge blocks simply cover fewer elements."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gpu_worker.kernels import BLOCK  # the only block size the kernels take (DeepSeek-V3's)

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0


def keeps_fp8(config) -> bool:
    """Whether the model holds its linear layers and experts in e4m3 with block scales (the loader
    clears config.fp8_block_size to widen an FP8 checkpoint at load instead)."""
    if config.fp8_block_size is None:
        return False
    if tuple(config.fp8_block_size) != (BLOCK, BLOCK):
        raise ValueError(f"FP8 weights in {list(config.fp8_block_size)} blocks can only be served "
                         f"dequantised (the FP8 kernels take {BLOCK}x{BLOCK} blocks)")
    return True


def blocks(n: int, size: int = BLOCK) -> int:
    """Scale blocks covering n rows or columns."""
    return -(-n // size)


def block_slice(rows: slice, split: int | None = None) -> slice:
    """The scale rows of weight rows [start, stop) of a weight whose rows from `split` on are a
    second tensor with its own blocks (gate then up): see kernels.fp8_gemm.weight_scale_row."""
    if split is not None and rows.start >= split:
        first = blocks(split)
        return slice(first + (rows.start - split) // BLOCK, first + blocks(rows.stop - split))
    return slice(rows.start // BLOCK, blocks(rows.stop))


def block_source(source: tuple) -> tuple:
    """The scale blocks of `source`, a slice per dimension of a checkpoint weight (a rank's part). A
    part must start on a block boundary: its scales are then exactly the blocks that cover it."""
    out = []
    for cut in source:
        if cut.start is None and cut.stop is None:
            out.append(slice(None))
        elif cut.start % BLOCK:
            raise ValueError(f"an FP8 weight can only be split at multiples of {BLOCK} (a part "
                             f"starts at {cut.start}); load it dequantised instead")
        else:
            out.append(block_slice(cut))
    return tuple(out)


def expand_scales(scale: torch.Tensor, shape: torch.Size, first: tuple[int, int] = (0, 0),
                  block: tuple[int, int] = (BLOCK, BLOCK)) -> torch.Tensor:
    """Block scales [..., R, C] -> one per element of a [..., rows, cols] weight (part) whose first
    element sits at `first` inside the first block."""
    rows, cols = shape[-2:]
    per_row = scale.float().repeat_interleave(block[0], dim=-2)[..., first[0]:first[0] + rows, :]
    return per_row.repeat_interleave(block[1], dim=-1)[..., first[1]:first[1] + cols]


def dequantize(weight: torch.Tensor, scale_inv: torch.Tensor, dtype: torch.dtype = torch.float32,
               split: int | None = None) -> torch.Tensor:
    """e4m3 weight [..., out, in] with its block scales -> [..., out, in] in dtype. split: two
    tensors stacked along rows, the first `split` rows long, each with its own blocks."""
    if split is not None:
        first = blocks(split)
        return torch.cat((dequantize(weight[..., :split, :], scale_inv[..., :first, :], dtype),
                          dequantize(weight[..., split:, :], scale_inv[..., first:, :], dtype)), -2)
    return (weight.float() * expand_scales(scale_inv, weight.shape)).to(dtype)


def quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """weight [out, in] -> (e4m3 weight, float32 scale_inv per block); dequantize() undoes it."""
    rows, cols = weight.shape
    padded = F.pad(weight.float(), (0, -cols % BLOCK, 0, -rows % BLOCK))
    tiles = padded.view(padded.shape[0] // BLOCK, BLOCK, padded.shape[1] // BLOCK, BLOCK)
    scale_inv = tiles.abs().amax(dim=(1, 3)).clamp(min=1e-12) / FP8_MAX
    q = weight.float() / expand_scales(scale_inv, weight.shape)
    return q.clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE), scale_inv


def quantize_activations(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, K] -> (e4m3, scales [M, ceil(K/128)]): DeepSeek's dynamic scheme, one scale per token
    per 128 channels (the reference for kernels.fp8_gemm.act_quant)."""
    rows, cols = x.shape
    padded = F.pad(x.float(), (0, -cols % BLOCK)).view(rows, -1, BLOCK)
    scale = padded.abs().amax(dim=-1).clamp(min=1e-4) / FP8_MAX
    q = (padded / scale[..., None]).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q.view(rows, -1)[:, :cols].contiguous(), scale
