"""Model configuration read from a Hugging Face DeepSeek-V3 `config.json`.

Only the fields the architecture needs are kept. Anything we cannot serve faithfully is refused
with `UnsupportedConfig(field, message)` rather than silently approximated.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


class UnsupportedConfig(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"unsupported config field {field!r}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class RopeConfig:
    """Rotary embedding of the qk_rope_head_dim part, with optional YaRN (Hugging Face semantics)."""

    theta: float
    yarn: bool = False
    factor: float = 1.0
    original_max_position_embeddings: int = 4096
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    truncate: bool = True
    # cos/sin are multiplied by this (HF `attention_factor`; 1.0 for DeepSeek-V3 where mscale == mscale_all_dim)
    attention_factor: float = 1.0
    # softmax scale is multiplied by yarn_mscale(factor, mscale_all_dim)**2 (0 = no adjustment)
    mscale_all_dim: float = 0.0


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    moe_intermediate_size: int
    num_hidden_layers: int
    first_k_dense_replace: int
    num_attention_heads: int
    n_routed_experts: int
    n_shared_experts: int
    num_experts_per_tok: int
    n_group: int
    topk_group: int
    norm_topk_prob: bool
    routed_scaling_factor: float
    q_lora_rank: int | None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    rope: RopeConfig
    max_position_embeddings: int
    rms_norm_eps: float
    fp8_block_size: tuple[int, int] | None = None  # set when the checkpoint is FP8 block-quantized

    # ---- derived -------------------------------------------------------------------------
    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def kv_cache_dim(self) -> int:
        """Values cached per token per layer: normalised latent + rotated rope key."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    @property
    def softmax_scale(self) -> float:
        scale = self.qk_head_dim ** -0.5
        if self.rope.yarn and self.rope.mscale_all_dim:
            m = yarn_mscale(self.rope.factor, self.rope.mscale_all_dim)
            scale *= m * m
        return scale

    def is_moe_layer(self, layer: int) -> bool:
        return layer >= self.first_k_dense_replace

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def from_dir(cls, path: str | Path) -> "ModelConfig":
        with open(Path(path) / "config.json") as f:
            return cls.from_hf_dict(json.load(f))

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        return _parse(d)


def yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    if factor <= 1:
        return 1.0
    return 0.1 * mscale * math.log(factor) + 1.0


# ---- parsing ---------------------------------------------------------------------------------

_REQUIRED_INT = [
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "moe_intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "n_routed_experts",
    "num_experts_per_tok",
    "kv_lora_rank",
    "qk_nope_head_dim",
    "qk_rope_head_dim",
    "v_head_dim",
]


def _positive_int(d: dict[str, Any], name: str, default: Any = None, allow_zero: bool = False) -> int:
    value = d.get(name, default)
    if value is None:
        raise UnsupportedConfig(name, "is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnsupportedConfig(name, f"must be an integer, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise UnsupportedConfig(name, f"must be {'non-negative' if allow_zero else 'positive'}, got {value}")
    return value


def _expect(d: dict[str, Any], name: str, allowed: tuple, default: Any) -> Any:
    value = d.get(name, default)
    if value not in allowed:
        raise UnsupportedConfig(name, f"only {', '.join(repr(a) for a in allowed)} supported, got {value!r}")
    return value


def _parse(d: dict[str, Any]) -> ModelConfig:
    if not isinstance(d, dict):
        raise UnsupportedConfig("config", "must be a JSON object")
    model_type = d.get("model_type", "deepseek_v3")
    if model_type != "deepseek_v3":
        raise UnsupportedConfig("model_type", f"only 'deepseek_v3' supported, got {model_type!r}")
    arch = d.get("architectures")
    if arch is not None and "DeepseekV3ForCausalLM" not in arch:
        raise UnsupportedConfig("architectures", f"expected DeepseekV3ForCausalLM, got {arch!r}")

    ints = {name: _positive_int(d, name) for name in _REQUIRED_INT}
    if ints["qk_rope_head_dim"] % 2:
        raise UnsupportedConfig("qk_rope_head_dim", "must be even")
    n_layers = ints["num_hidden_layers"]
    heads = ints["num_attention_heads"]

    kv_heads = d.get("num_key_value_heads", heads)
    if kv_heads not in (None, heads):
        raise UnsupportedConfig("num_key_value_heads", f"must equal num_attention_heads ({heads}) for MLA")

    first_dense = _positive_int(d, "first_k_dense_replace", 0, allow_zero=True)
    if first_dense > n_layers:
        raise UnsupportedConfig("first_k_dense_replace", f"{first_dense} exceeds num_hidden_layers {n_layers}")
    _expect(d, "moe_layer_freq", (1,), 1)
    _expect(d, "topk_method", ("noaux_tc",), "noaux_tc")
    _expect(d, "scoring_func", ("sigmoid",), "sigmoid")
    _expect(d, "hidden_act", ("silu",), "silu")
    _expect(d, "attention_bias", (False,), False)
    _expect(d, "tie_word_embeddings", (False,), False)
    _expect(d, "ep_size", (1,), 1)

    n_experts = ints["n_routed_experts"]
    top_k = ints["num_experts_per_tok"]
    n_group = _positive_int(d, "n_group", 1)
    topk_group = _positive_int(d, "topk_group", 1)
    if n_experts % n_group:
        raise UnsupportedConfig("n_group", f"n_routed_experts {n_experts} is not divisible by n_group {n_group}")
    if n_experts // n_group < 2:
        raise UnsupportedConfig("n_group", "each group needs at least 2 experts (group score = sum of its top 2)")
    if topk_group > n_group:
        raise UnsupportedConfig("topk_group", f"{topk_group} exceeds n_group {n_group}")
    if top_k > topk_group * (n_experts // n_group):
        raise UnsupportedConfig("num_experts_per_tok", f"{top_k} exceeds the experts in {topk_group} kept groups")
    n_shared = _positive_int(d, "n_shared_experts", 0, allow_zero=True)

    q_lora_rank = d.get("q_lora_rank")
    if q_lora_rank == 0:  # DeepSeek's demo configs use 0 for "no query compression"
        q_lora_rank = None
    if q_lora_rank is not None:
        q_lora_rank = _positive_int(d, "q_lora_rank")

    scaling = d.get("routed_scaling_factor", 1.0)
    if not isinstance(scaling, (int, float)) or isinstance(scaling, bool) or scaling <= 0:
        raise UnsupportedConfig("routed_scaling_factor", f"must be a positive number, got {scaling!r}")
    norm_topk = d.get("norm_topk_prob", True)
    if not isinstance(norm_topk, bool):
        raise UnsupportedConfig("norm_topk_prob", f"must be a boolean, got {norm_topk!r}")
    eps = d.get("rms_norm_eps", 1e-6)
    if not isinstance(eps, (int, float)) or eps <= 0:
        raise UnsupportedConfig("rms_norm_eps", f"must be a positive number, got {eps!r}")

    max_pos = _positive_int(d, "max_position_embeddings", 4096)
    rope = _parse_rope(d, max_pos)

    fp8_block = None
    quant = d.get("quantization_config")
    if quant is not None:
        method = quant.get("quant_method")
        if method != "fp8":
            raise UnsupportedConfig("quantization_config.quant_method", f"only 'fp8' supported, got {method!r}")
        if quant.get("fmt", "e4m3") != "e4m3":
            raise UnsupportedConfig("quantization_config.fmt", f"only 'e4m3' supported, got {quant.get('fmt')!r}")
        block = quant.get("weight_block_size")
        if not (isinstance(block, list) and len(block) == 2 and all(isinstance(b, int) and b > 0 for b in block)):
            raise UnsupportedConfig("quantization_config.weight_block_size", f"expected [rows, cols], got {block!r}")
        fp8_block = (block[0], block[1])

    dtype = d.get("torch_dtype", d.get("dtype"))
    if dtype is not None and dtype not in ("bfloat16", "float16", "float32"):
        raise UnsupportedConfig("torch_dtype", f"only bfloat16, float16, float32 supported, got {dtype!r}")

    return ModelConfig(
        **ints,
        first_k_dense_replace=first_dense,
        n_shared_experts=n_shared,
        n_group=n_group,
        topk_group=topk_group,
        norm_topk_prob=norm_topk,
        routed_scaling_factor=float(scaling),
        q_lora_rank=q_lora_rank,
        rope=rope,
        max_position_embeddings=max_pos,
        rms_norm_eps=float(eps),
        fp8_block_size=fp8_block,
    )


def _parse_rope(d: dict[str, Any], max_pos: int) -> RopeConfig:
    theta = d.get("rope_theta", 10000.0)
    scaling = d.get("rope_scaling")
    if scaling is None and isinstance(d.get("rope_parameters"), dict):  # transformers >= 5 spelling
        params = d["rope_parameters"]
        theta = params.get("rope_theta", theta)
        scaling = params if params.get("rope_type", params.get("type", "default")) != "default" else None
    if not isinstance(theta, (int, float)) or theta <= 0:
        raise UnsupportedConfig("rope_theta", f"must be a positive number, got {theta!r}")
    if scaling is None:
        return RopeConfig(theta=float(theta))
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind != "yarn":
        raise UnsupportedConfig("rope_scaling.type", f"only 'yarn' (or no rope_scaling) supported, got {kind!r}")
    original = scaling.get("original_max_position_embeddings")
    if not isinstance(original, int) or original <= 0:
        raise UnsupportedConfig("rope_scaling.original_max_position_embeddings", f"required, got {original!r}")
    factor = scaling.get("factor")
    if factor is None:  # Hugging Face's fallback
        factor = max_pos / original
    if not isinstance(factor, (int, float)) or factor <= 0:
        raise UnsupportedConfig("rope_scaling.factor", f"must be a positive number, got {factor!r}")
    mscale = scaling.get("mscale")
    mscale_all_dim = scaling.get("mscale_all_dim")
    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:
        if mscale and mscale_all_dim:
            attention_factor = yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim)
        else:
            attention_factor = yarn_mscale(factor)
    return RopeConfig(
        theta=float(theta),
        yarn=True,
        factor=float(factor),
        original_max_position_embeddings=original,
        beta_fast=float(scaling.get("beta_fast") or 32),
        beta_slow=float(scaling.get("beta_slow") or 1),
        truncate=bool(scaling.get("truncate", True)),
        attention_factor=float(attention_factor),
        mscale_all_dim=float(mscale_all_dim or 0.0),
    )


DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
