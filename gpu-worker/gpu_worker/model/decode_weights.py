"""Weights of the decoder layers folded for the small-decode path (small_decode.py).

A decode step of a small model is hundreds of tiny products, so its cost is the number of ops (and, as
the lm_head streams 16 MB through the caches every step, the bytes of weights it reads), not the
arithmetic. Everything linear between two nonlinearities is multiplied out once here (in float64, stored
as float32), so the step runs one product where the module path runs several:

- RMSNorm gains go into the products that read the normalised vector (input gain into qkv_a, q_a gain
  into the query product, kv_a gain into the product that spreads the norm factors, post-attention gain
  into the router and the dense MLP);
- absorbed attention: q_b, W_UK and the softmax scale become one query product whose output per head is
  [q_latent, q_pe], already scaled; W_UV then o_proj become one [heads * kv_lora, hidden] product;
- the two norms inside attention (q_a over the query latent, kv_a over the KV latent) share one
  mean-of-squares product and one product spreading each row's two factors over the columns;
- MoE: the routed experts then the shared experts' slices (as MoE._fused_stacks), down projections
  transposed ([E + S, inter, hidden]) so the down products of all chosen experts and their weighted sum
  are one batched product. These stay exact copies in the model dtype (half the bytes of float32 for a
  bf16 model; only the chosen experts are widened, per step): the post-attention gain is applied to the
  activation and routed_scaling_factor to the routing weights instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .moe import MoE

# Largest layer (parameter elements) whose folded copy the small-decode path keeps: the bound of MoE's
# fused stacks. A real DeepSeek-V3 layer is far larger and never folded.
FOLDED_LAYER_ELEMENTS = 1 << 22


@dataclass
class FoldedAttention:
    qkv: torch.Tensor  # [dim, q_cols + R + rope]: q (or the queries without q_lora), latent, rope key
    segment_mean: torch.Tensor  # [q_cols + R + rope, 2]: 1/width on the q (col 0) and latent (col 1) columns
    segment_eps: torch.Tensor  # [1, 2]
    segment_spread: torch.Tensor  # [2, q_cols + R + rope]: factor 0 -> q columns, factor 1 -> latent (x kv_a gain)
    segment_ones: torch.Tensor  # [1, q_cols + R + rope]: 1 on the columns left unnormalised
    query: torch.Tensor | None  # [q_cols, H * (R + rope)]; None without q_lora (qkv's q columns are the queries)
    out: torch.Tensor  # [H * R, dim]: W_UV then o_proj
    heads: int
    q_cols: int
    rank: int  # kv_lora_rank R
    entry_width: int  # R + rope: one cache entry, one query head in latent space


@dataclass
class FoldedMoE:
    router: torch.Tensor  # [dim, E] float32: post-attention gain folded
    bias: torch.Tensor  # [E] selection bias
    gain: torch.Tensor  # [dim] float32 post-attention gain, for the experts' input
    gate_up: torch.Tensor  # [E + S, 2 * inter, dim], model dtype
    down_t: torch.Tensor  # [E + S, inter, dim], model dtype
    scale: float  # routed_scaling_factor
    n_shared: int
    top_k: int
    n_group: int
    topk_group: int
    normalise: bool
    inter: int


@dataclass
class FoldedMLP:
    gate_up: torch.Tensor  # [dim, 2 * inter]: post-attention gain folded
    down: torch.Tensor  # [inter, dim]
    inter: int


@dataclass
class FoldedLayer:
    attn: FoldedAttention
    mlp: FoldedMoE | FoldedMLP
    eps: float  # of the input and post-attention norms


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float64)


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32).contiguous()


def fold_attention(attn, input_gain: torch.Tensor) -> FoldedAttention:
    """attn: MLAttention; input_gain: the decoder layer's input_layernorm weight."""
    heads, nope, rope, v, rank = attn.heads, attn.nope_dim, attn.rope_dim, attn.v_dim, attn.kv_lora_rank
    entry = rank + rope
    qkv = _f64(attn.qkv_a_proj) * _f64(input_gain)[None, :]  # [q_out + entry, dim]

    w_kv = _f64(attn.kv_b_proj).view(heads, nope + v, rank)
    w_uk, w_uv = w_kv[:, :nope], w_kv[:, nope:]  # [H, nope, R], [H, v, R]
    has_q_norm = attn.q_lora_rank is not None
    if has_q_norm:
        q_b = _f64(attn.q_b_proj) * _f64(attn.q_a_layernorm.weight)[None, :]  # [H * qk, q_lora]
    else:
        q_b = qkv[: attn.q_out]  # q_proj (gain folded) reads the normalised input directly
    q_b = q_b.view(heads, nope + rope, -1)
    # per head: latent query W_UK^T q_nope, then q_pe; both times the softmax scale
    query = torch.cat((w_uk.transpose(1, 2) @ q_b[:, :nope], q_b[:, nope:]), dim=1) * attn.scale
    query = query.reshape(heads * entry, -1)  # [H * entry, q_lora or dim]

    if has_q_norm:
        q_cols = attn.q_out
        query_t = query.T
    else:  # the query product joins qkv, whose q columns then are the queries
        qkv = torch.cat((query, qkv[attn.q_out :]))
        q_cols, query_t = heads * entry, None
    width = q_cols + entry

    segment_mean = torch.zeros(width, 2, dtype=torch.float64)
    segment_spread = torch.zeros(2, width, dtype=torch.float64)
    segment_ones = torch.zeros(1, width, dtype=torch.float64)
    if has_q_norm:
        segment_mean[:q_cols, 0] = 1.0 / q_cols
        segment_spread[0, :q_cols] = 1.0
    else:
        segment_ones[0, :q_cols] = 1.0
    segment_mean[q_cols : q_cols + rank, 1] = 1.0 / rank
    segment_spread[1, q_cols : q_cols + rank] = _f64(attn.kv_a_layernorm.weight)
    segment_ones[0, q_cols + rank :] = 1.0
    eps = attn.kv_a_layernorm.eps

    w_o = _f64(attn.o_proj).view(-1, heads, v)  # [dim, H, v]
    out = torch.einsum("dhv,hvr->hrd", w_o, w_uv).reshape(heads * rank, -1)  # [H * R, dim]
    return FoldedAttention(
        qkv=_f32(qkv.T), segment_mean=_f32(segment_mean),
        segment_eps=torch.full((1, 2), eps, dtype=torch.float32), segment_spread=_f32(segment_spread),
        segment_ones=_f32(segment_ones), query=None if query_t is None else _f32(query_t),
        out=_f32(out), heads=heads, q_cols=q_cols, rank=rank, entry_width=entry,
    )


def fold_moe(moe, post_gain: torch.Tensor, scaling: float) -> FoldedMoE:
    """moe: MoE; post_gain: the decoder layer's post_attention_layernorm weight."""
    router, experts, shared = moe.gate, moe.experts, moe.shared_experts
    gate_up, down_t = experts.gate_up_proj.detach(), experts.down_proj.detach().transpose(1, 2)  # [E, inter, dim]
    n_shared = moe.n_shared
    if n_shared:
        inter, dim = experts.inter, shared.down_proj.shape[0]
        shared_gate_up = shared.gate_up_proj.detach().view(2, n_shared, inter, dim).transpose(0, 1)
        shared_down_t = shared.down_proj.detach().view(dim, n_shared, inter).permute(1, 2, 0)
        gate_up = torch.cat((gate_up, shared_gate_up.reshape(n_shared, 2 * inter, dim)))
        down_t = torch.cat((down_t, shared_down_t))
    return FoldedMoE(
        router=_f32((_f64(router.weight) * _f64(post_gain)[None, :]).T), bias=_f32(router.e_score_correction_bias),
        gain=_f32(post_gain), gate_up=gate_up.contiguous(), down_t=down_t.contiguous(), scale=scaling,
        n_shared=n_shared, top_k=router.top_k, n_group=router.n_group, topk_group=router.topk_group,
        normalise=router.normalise, inter=experts.inter,
    )


def fold_mlp(mlp, post_gain: torch.Tensor) -> FoldedMLP:
    """mlp: SwiGLU (a dense layer)."""
    gate_up = _f64(mlp.gate_up_proj) * _f64(post_gain)[None, :]
    return FoldedMLP(gate_up=_f32(gate_up.T), down=_f32(mlp.down_proj.T), inter=mlp.inter)


def fold_layer(layer, config) -> FoldedLayer:
    """layer: DecoderLayer."""
    attn = fold_attention(layer.self_attn, layer.input_layernorm.weight)
    post = layer.post_attention_layernorm.weight
    if isinstance(layer.mlp, MoE):
        mlp = fold_moe(layer.mlp, post, config.routed_scaling_factor)
    else:
        mlp = fold_mlp(layer.mlp, post)
    return FoldedLayer(attn=attn, mlp=mlp, eps=layer.input_layernorm.eps)


def rotation_basis(rope_dim: int) -> torch.Tensor:
    """[rope, rope * rope]: for cs [T, rope], the interleaved (cos, sin) of each rope pair,
    `(cs @ basis).view(T, rope, rope)` is the matrix M with x @ M rotating each interleaved pair
    (x0, x1) -> (x0 c - x1 s, x0 s + x1 c) (rope.apply_rope's complex product)."""
    basis = torch.zeros(rope_dim, rope_dim, rope_dim)
    for pair in range(rope_dim // 2):
        a, b = 2 * pair, 2 * pair + 1
        cos, sin = basis[a], basis[b]
        cos[a, a] = cos[b, b] = 1.0
        sin[a, b], sin[b, a] = 1.0, -1.0
    return basis.view(rope_dim, -1)
