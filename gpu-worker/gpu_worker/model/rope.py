"""Rotary embedding of the qk_rope_head_dim slice with YaRN (Hugging Face's `rope_scaling`),
tabulated once for every position. Pairs are *interleaved* (x0, x1), (x2, x3), ... as DeepSeek's
checkpoints expect, so the cached k_pe stays interleaved; transformers de-interleaves q_pe and k_pe
alike, which leaves the scores identical."""

from __future__ import annotations

import math

import torch

from .config import ModelConfig, RopeConfig


def inverse_frequencies(rope: RopeConfig, dim: int) -> torch.Tensor:
    """[dim/2] float32 inverse frequencies, YaRN-blended when configured."""
    base = rope.theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    extrapolation = 1.0 / base
    if not rope.yarn:
        return extrapolation
    interpolation = 1.0 / (rope.factor * base)

    def correction_dim(rotations: float) -> float:
        return dim * math.log(rope.original_max_position_embeddings / (rotations * 2 * math.pi)) / (
            2 * math.log(rope.theta)
        )

    low, high = correction_dim(rope.beta_fast), correction_dim(rope.beta_slow)
    if rope.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    keep = 1 - ramp  # 1: keep the original (high-frequency) rotation, 0: fully interpolated
    return interpolation * (1 - keep) + extrapolation * keep


class RotaryTable(torch.nn.Module):
    """Rotation of every rope pair at every position (complex64 [max_positions, dim/2])."""

    def __init__(self, config: ModelConfig, device: torch.device | str | None = None):
        super().__init__()
        dim = config.qk_rope_head_dim
        inv_freq = inverse_frequencies(config.rope, dim)
        positions = torch.arange(config.max_position_embeddings, dtype=torch.float32)
        angles = positions[:, None] * inv_freq[None, :]  # same fp32 product as the references
        # unit phasors scaled by YaRN's attention factor: [max_positions, dim/2] complex64
        freqs = torch.polar(torch.full_like(angles, config.rope.attention_factor), angles)
        self.register_buffer("freqs", freqs.to(device), persistent=False)

    def lookup(self, positions: torch.Tensor) -> torch.Tensor:
        return self.freqs[positions]


def apply_rope(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of x [..., dim] by freqs (complex, broadcast to [..., dim/2])."""
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * freqs).flatten(-2).to(x.dtype)
