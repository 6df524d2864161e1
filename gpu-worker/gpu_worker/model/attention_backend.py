"""MLA attention behind one seam: TorchAttention (any device, the oracle) or TritonAttention
(gpu_worker/kernels). mla.py hands them absorbed decode queries and expanded prefill keys/values."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .attention_metadata import DecodePart, PrefillPart


class TorchAttention:
    def decode(self, query: torch.Tensor, cache: torch.Tensor, meta: DecodePart, latent_dim: int) -> torch.Tensor:
        """query [D, H, R + PE], cache [num_blocks, page, R + PE] -> [D, H, R]: each sequence's context
        gathered into a padded [D, L, R + PE] batch, padding masked out of the softmax."""
        slots, valid = meta.context_slots
        context = cache.view(-1, cache.shape[-1])[slots].to(query.dtype)  # [D, L, R + PE]
        scores = torch.bmm(query, context.transpose(1, 2)).masked_fill_(~valid[:, None, :], float("-inf"))
        probs = scores.softmax(dim=-1, dtype=torch.float32).to(query.dtype)
        return torch.bmm(probs, context[..., :latent_dim])

    def prefill(self, q_nope, q_pe, k_nope, k_pe, v, meta: PrefillPart, scale: float) -> torch.Tensor:
        """q_* [Q, H, *], k_nope / v [L, H, *], k_pe [L, PE] (shared by the heads) -> [Q, H, v]:
        one causal attention per sequence, offset by its cached prefix."""
        heads = q_nope.shape[1]
        outputs, q0, k0 = [], 0, 0
        for q_len, k_len in zip(meta.query_lens, meta.context_lens):
            q = torch.cat((q_nope[q0:q0 + q_len], q_pe[q0:q0 + q_len]), dim=-1).transpose(0, 1)
            k_rope = k_pe[k0:k0 + k_len, None].expand(-1, heads, -1)
            k = torch.cat((k_nope[k0:k0 + k_len], k_rope), dim=-1).transpose(0, 1)
            visible = torch.ones(q_len, k_len, dtype=torch.bool, device=q.device).tril(k_len - q_len)
            out = F.scaled_dot_product_attention(q, k, v[k0:k0 + k_len].transpose(0, 1), attn_mask=visible, scale=scale)
            outputs.append(out.transpose(0, 1))
            q0, k0 = q0 + q_len, k0 + k_len
        return torch.cat(outputs)


class TritonAttention:
    def __init__(self):
        # imported here: the torch backend (CPU serving) never loads Triton
        from gpu_worker.kernels.mla_decode import mla_decode
        from gpu_worker.kernels.mla_prefill import mla_prefill

        self._decode, self._prefill = mla_decode, mla_prefill

    def decode(self, query, cache, meta: DecodePart, latent_dim: int) -> torch.Tensor:
        return self._decode(query, cache, meta.block_tables, meta.context_lens, latent_dim, meta.num_splits)

    def prefill(self, q_nope, q_pe, k_nope, k_pe, v, meta: PrefillPart, scale: float) -> torch.Tensor:
        return self._prefill(q_nope, q_pe, k_nope, k_pe, v, meta.cu_query_lens, meta.cu_context_lens,
                             meta.max_query_len, scale)


def attention_backend(name: str) -> TorchAttention | TritonAttention:
    return TritonAttention() if name == "triton" else TorchAttention()
