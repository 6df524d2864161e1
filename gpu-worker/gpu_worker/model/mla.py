"""Multi-head latent attention over a paged cache of [normalised latent c | rotated rope key k_pe]
per token, shared by all heads; kv_b_proj per head is [W_UK; W_UV].

- decode, absorbed form: q_lat = W_UK^T q_nope attends in latent space over the cache in place,
  then o = W_UV (sum_t p_t c_t); K and V are never materialised.
- prefill, expanded form: k_nope = W_UK c and v = W_UV c for the prefilled sequences' contexts only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gpu_worker.parallel.collectives import all_reduce
from gpu_worker.parallel.state import current

from . import fp8
from .attention_backend import attention_backend
from .attention_metadata import AttentionMetadata, DecodePart, PrefillPart
from .config import ModelConfig
from .layers import Linear, RMSNorm
from .rope import apply_rope


class MLAttention(nn.Module):
    def __init__(self, config: ModelConfig, dtype: torch.dtype, device=None,
                 kernel_backend: str = "torch"):
        super().__init__()
        self.attention = attention_backend(kernel_backend)
        # Tensor parallel: this rank's heads. The latent and k_pe are per token, shared by every
        # head, so q_a/kv_a and the cache stay whole on every rank; o_proj's partial sums add up.
        self.head_part = current().part(config.num_attention_heads, "num_attention_heads")
        self.heads = heads = self.head_part.stop - self.head_part.start
        self.q_lora_rank, self.kv_lora_rank = config.q_lora_rank, config.kv_lora_rank
        self.nope_dim, self.rope_dim = config.qk_nope_head_dim, config.qk_rope_head_dim
        self.v_dim, self.qk_dim = config.v_head_dim, config.qk_head_dim
        self.scale = config.softmax_scale
        eps, dim = config.rms_norm_eps, config.hidden_size
        # FP8 checkpoints: the projections stay e4m3 with block scales (layers.Linear)
        linear = dict(dtype=dtype, device=device, quantized=fp8.keeps_fp8(config),
                      kernel_backend=kernel_backend)
        # q_a_proj (or q_proj without query compression) and kv_a_proj_with_mqa read the same input:
        # one [q_out + kv_lora_rank + rope_dim, dim] matmul.
        self.q_out = self.q_lora_rank or heads * self.qk_dim
        qkv_a_rows = self.q_out + self.kv_lora_rank + self.rope_dim
        self.qkv_a_proj = Linear(qkv_a_rows, dim, split=self.q_out, **linear)
        if self.q_lora_rank:
            self.q_a_layernorm = RMSNorm(self.q_lora_rank, eps, dtype, device)
            self.q_b_proj = Linear(heads * self.qk_dim, self.q_lora_rank, **linear)
        self.kv_a_layernorm = RMSNorm(self.kv_lora_rank, eps, dtype, device)
        self.kv_b_proj = Linear(heads * (self.nope_dim + self.v_dim), self.kv_lora_rank, **linear)
        self.o_proj = Linear(dim, heads * self.v_dim, **linear)

    def checkpoint_layout(self, prefix: str) -> dict[str, tuple]:
        """name -> (parameter, index of the slice it fills[, this rank's part of the tensor])."""
        h0, h1 = self.head_part.start, self.head_part.stop
        q_rows = (slice(h0 * self.qk_dim, h1 * self.qk_dim),)
        kv_b_rows = (slice(h0 * (self.nope_dim + self.v_dim), h1 * (self.nope_dim + self.v_dim)),)
        o_cols = (slice(None), slice(h0 * self.v_dim, h1 * self.v_dim))
        kv_rows = slice(self.q_out, self.q_out + self.kv_lora_rank + self.rope_dim)
        layout = {
            **self.qkv_a_proj.entries(f"{prefix}.kv_a_proj_with_mqa.weight", kv_rows),
            f"{prefix}.kv_a_layernorm.weight": (self.kv_a_layernorm.weight, ()),
            **self.kv_b_proj.entries(f"{prefix}.kv_b_proj.weight", None, kv_b_rows),
            **self.o_proj.entries(f"{prefix}.o_proj.weight", None, o_cols),
        }
        if not self.q_lora_rank:
            return {**layout, **self.qkv_a_proj.entries(f"{prefix}.q_proj.weight",
                                                        slice(0, self.q_out), q_rows)}
        return {**layout,
                **self.qkv_a_proj.entries(f"{prefix}.q_a_proj.weight", slice(0, self.q_out)),
                f"{prefix}.q_a_layernorm.weight": (self.q_a_layernorm.weight, ()),
                **self.q_b_proj.entries(f"{prefix}.q_b_proj.weight", None, q_rows)}

    def _project(self, x: torch.Tensor, freqs: torch.Tensor):
        """x [..., dim] -> q_nope [..., H, nope], q_pe [..., H, rope] (rotated), cache entry
        [..., R + rope]."""
        widths = [self.q_out, self.kv_lora_rank, self.rope_dim]
        q, latent, k_pe = self.qkv_a_proj(x).split(widths, dim=-1)
        if self.q_lora_rank:
            q = self.q_b_proj(self.q_a_layernorm(q))
        q = q.unflatten(-1, (self.heads, self.qk_dim))
        q_nope, q_pe = q.split([self.nope_dim, self.rope_dim], dim=-1)
        # one rotation for the H query heads and the shared key: [..., H + 1, rope]
        pe = apply_rope(torch.cat((q_pe, k_pe.unsqueeze(-2)), dim=-2), freqs.unsqueeze(-2))
        q_pe, k_pe = pe.split([self.heads, 1], dim=-2)
        return q_nope, q_pe, torch.cat((self.kv_a_layernorm(latent), k_pe.squeeze(-2)), dim=-1)

    def _expand(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """latent [L, R] -> k_nope [L, H, nope], v [L, H, v_dim]."""
        kv = self.kv_b_proj(latent).unflatten(-1, (self.heads, self.nope_dim + self.v_dim))
        return kv.split([self.nope_dim, self.v_dim], dim=-1)

    def forward(self, x: torch.Tensor, freqs: torch.Tensor, meta: AttentionMetadata,
                cache: torch.Tensor) -> torch.Tensor:
        """x [T, dim] packed new tokens (decodes first); cache [blocks, block_size, R + rope]."""
        q_nope, q_pe, entry = self._project(x, freqs)
        cache.view(-1, cache.shape[-1]).index_copy_(0, meta.slot_mapping, entry.to(cache.dtype))
        d = meta.num_decodes
        parts = []
        if meta.decode is not None:
            parts.append(self._decode(q_nope[:d], q_pe[:d], cache, meta.decode))
        if meta.prefill is not None:
            parts.append(self._prefill(q_nope[d:], q_pe[d:], cache, meta.prefill))
        out = parts[0] if len(parts) == 1 else torch.cat(parts)
        return all_reduce(self.o_proj(out.flatten(-2)))

    def _decode(self, q_nope, q_pe, cache, meta: DecodePart) -> torch.Tensor:
        """Absorbed form. q_nope [D, H, nope], q_pe [D, H, rope] -> [D, H, v_dim]."""
        w_uk, w_uv_t = self._absorbed_weights(q_nope.dtype)
        q_latent = torch.bmm(q_nope.transpose(0, 1), w_uk).transpose(0, 1)  # [D, H, R], scaled
        query = torch.cat((q_latent, q_pe * self.scale), dim=-1)  # [D, H, R + rope]
        out_latent = self.attention.decode(query, cache, meta, self.kv_lora_rank)  # [D, H, R]
        return torch.bmm(out_latent.transpose(0, 1), w_uv_t).transpose(0, 1)

    def _absorbed_weights(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(softmax_scale * W_UK [H, nope, R], W_UV^T [H, R, v]) in `dtype`, rebuilt only when
        kv_b_proj changes."""
        weight = self.kv_b_proj.weight
        key = (dtype, weight._version, weight.data_ptr())
        if getattr(self, "_absorbed_key", None) != key:
            w_kv = self.kv_b_proj.dequantized(torch.float32).unflatten(0, (self.heads, -1))
            w_uk, w_uv = w_kv.split([self.nope_dim, self.v_dim], dim=1)
            self._absorbed = ((w_uk * self.scale).to(dtype).contiguous(),
                              w_uv.transpose(1, 2).to(dtype).contiguous())
            self._absorbed_key = key
        return self._absorbed

    def _prefill(self, q_nope, q_pe, cache, meta: PrefillPart) -> torch.Tensor:
        """Expanded form over the prefilled sequences' contexts: q_* [P, H, *] -> [P, H, v]."""
        context = cache.view(-1, cache.shape[-1])[meta.context_slots].to(q_nope.dtype)
        latent, k_pe = context.split([self.kv_lora_rank, self.rope_dim], dim=-1)
        k_nope, v = self._expand(latent)
        return self.attention.prefill(q_nope, q_pe, k_nope, k_pe, v, meta, self.scale)

    def forward_dense(self, x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
        """The cacheless reference: x [B, S, dim], causal over S, expanded form."""
        q_nope, q_pe, entry = self._project(x, freqs)
        query = torch.cat((q_nope, q_pe), dim=-1).transpose(1, 2)  # [B, H, S, qk]
        latent, k_pe = entry.split([self.kv_lora_rank, self.rope_dim], dim=-1)
        k_nope, v = self._expand(latent)
        k_rope = k_pe.unsqueeze(-2).expand(*k_nope.shape[:-1], self.rope_dim)
        k = torch.cat((k_nope, k_rope), dim=-1)
        out = F.scaled_dot_product_attention(query, k.transpose(1, 2), v.transpose(1, 2),
                                             is_causal=True, scale=self.scale)
        return all_reduce(self.o_proj(out.transpose(1, 2).flatten(-2)))
