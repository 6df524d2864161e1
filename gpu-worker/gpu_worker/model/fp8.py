"""FP8 (e4m3) block quantization as in DeepSeek-V3 checkpoints: one float32 `weight_scale_inv` per
block (128x128), weight = fp8_block * scale_inv. Ragged edge blocks simply cover fewer elements."""

from __future__ import annotations

import torch

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0
BLOCK = 128  # the only block size the kernels take (DeepSeek-V3's): 128x128 weight blocks, 1x128 activations


def keeps_fp8(config) -> bool:
    """Whether a model built from `config` holds its linear layers and experts in e4m3 with block scales
    (the loader clears config.fp8_block_size to widen an FP8 checkpoint at load instead)."""
    if config.fp8_block_size is None:
        return False
    if tuple(config.fp8_block_size) != (BLOCK, BLOCK):
        raise ValueError(f"FP8 weights in {list(config.fp8_block_size)} blocks can only be served dequantised "
                         f"(the FP8 kernels take {BLOCK}x{BLOCK} blocks)")
    return True


def blocks(n: int) -> int:
    """Scale blocks covering n rows or columns."""
    return -(-n // BLOCK)


def block_slice(rows: slice, split: int | None = None) -> slice:
    """The scale rows of weight rows [start, stop) of a weight whose rows from `split` on are a second
    tensor with its own blocks (gate then up): see kernels.fp8_gemm.weight_scale_row."""
    if split is not None and rows.start >= split:
        first = blocks(split)
        return slice(first + (rows.start - split) // BLOCK, first + blocks(rows.stop - split))
    return slice(rows.start // BLOCK, blocks(rows.stop))


def block_source(source: tuple) -> tuple:
    """The scale blocks of `source`, a slice per dimension of a checkpoint weight (a rank's part). A part
    must start on a block boundary: its scales are then exactly the blocks that cover it."""
    out = []
    for cut in source:
        if cut.start is None and cut.stop is None:
            out.append(slice(None))
            continue
        if cut.start % BLOCK:
            raise ValueError(f"an FP8 weight can only be split at multiples of {BLOCK} (a part starts at "
                             f"{cut.start}); load it dequantised instead")
        out.append(slice(cut.start // BLOCK, blocks(cut.stop)))
    return tuple(out)


def _expand_blocks(scale: torch.Tensor, shape: torch.Size, block: tuple[int, int]) -> torch.Tensor:
    rows, cols = shape[-2:]
    return scale.repeat_interleave(block[0], dim=-2)[..., :rows, :].repeat_interleave(block[1], dim=-1)[..., :cols]


def dequantize(weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int] = (128, 128),
               dtype: torch.dtype = torch.float32, split: int | None = None) -> torch.Tensor:
    """weight [..., out, in] float8_e4m3fn, scale_inv [..., ceil(out/b0), ceil(in/b1)] -> dequantized
    [..., out, in] (leading dimensions: stacked experts).

    split: the weight is two tensors stacked along rows, the first `split` rows long, each with its own
    blocks (scale_inv holds the first part's block rows, then the second's)."""
    if split is not None:
        first_blocks = -(-split // block[0])
        parts = [dequantize(weight[..., :split, :], scale_inv[..., :first_blocks, :], block, dtype),
                 dequantize(weight[..., split:, :], scale_inv[..., first_blocks:, :], block, dtype)]
        return torch.cat(parts, dim=-2)
    expected = (*weight.shape[:-2], -(-weight.shape[-2] // block[0]), -(-weight.shape[-1] // block[1]))
    if tuple(scale_inv.shape) != expected:
        raise ValueError(f"scale shape {tuple(scale_inv.shape)} does not match weight {tuple(weight.shape)} "
                         f"in {block[0]}x{block[1]} blocks (expected {expected})")
    full = weight.to(torch.float32) * _expand_blocks(scale_inv.to(torch.float32), weight.shape, block)
    return full.to(dtype)


def quantize(weight: torch.Tensor, block: tuple[int, int] = (128, 128)) -> tuple[torch.Tensor, torch.Tensor]:
    """weight [out, in] -> (float8_e4m3fn weight, float32 scale_inv per block) such that dequantize() ~ weight."""
    rows, cols = weight.shape
    w = weight.to(torch.float32)
    pad_r, pad_c = -rows % block[0], -cols % block[1]
    padded = torch.nn.functional.pad(w, (0, pad_c, 0, pad_r))
    blocks = padded.view(padded.shape[0] // block[0], block[0], padded.shape[1] // block[1], block[1])
    amax = blocks.abs().amax(dim=(1, 3)).clamp(min=1e-12)
    scale_inv = amax / FP8_MAX
    q = (w / _expand_blocks(scale_inv, w.shape, block)).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q, scale_inv


def quantize_activations(x: torch.Tensor, group: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, K] -> (e4m3 [M, K], float32 scales [M, ceil(K/group)]): one scale per token per `group`
    channels, max|x| / 448 with a 1e-4 floor on max|x| (DeepSeek's dynamic activation scheme). The
    reference for kernels.fp8_gemm.act_quant."""
    rows, cols = x.shape
    padded = torch.nn.functional.pad(x.float(), (0, -cols % group)).view(rows, -1, group)
    scale = padded.abs().amax(dim=-1).clamp(min=1e-4) / FP8_MAX
    q = (padded / scale[..., None]).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q.view(rows, -1)[:, :cols].contiguous(), scale
