"""The fields of a Hugging Face DeepSeek-V3 `config.json` the architecture needs. Anything we
cannot serve faithfully is refused (UnsupportedConfig) rather than approximated."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class UnsupportedConfig(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"unsupported config field {field!r}: {message}")
        self.field = field


@dataclass(frozen=True)
class RopeConfig:
    """Rotary embedding of the qk_rope_head_dim part, optionally YaRN (Hugging Face semantics)."""
    theta: float
    yarn: bool = False
    factor: float = 1.0
    original_max_position_embeddings: int = 4096
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    truncate: bool = True
    # cos/sin are multiplied by this (HF `attention_factor`; 1.0 when mscale == mscale_all_dim)
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
    num_attention_heads: int
    n_routed_experts: int
    num_experts_per_tok: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    first_k_dense_replace: int
    n_shared_experts: int
    n_group: int
    topk_group: int
    norm_topk_prob: bool
    routed_scaling_factor: float
    q_lora_rank: int | None
    rope: RopeConfig
    max_position_embeddings: int
    rms_norm_eps: float
    fp8_block_size: tuple[int, int] | None = None  # set when the checkpoint is FP8 block-quantized

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def kv_cache_dim(self) -> int:
        """Values cached per token per layer: normalised latent + rotated rope key."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    @property
    def softmax_scale(self) -> float:
        scale = self.qk_head_dim**-0.5
        if self.rope.yarn and self.rope.mscale_all_dim:
            scale *= yarn_mscale(self.rope.factor, self.rope.mscale_all_dim) ** 2
        return scale

    def is_moe_layer(self, layer: int) -> bool:
        return layer >= self.first_k_dense_replace

    @classmethod
    def from_dir(cls, path: str | Path) -> "ModelConfig":
        return cls.from_hf_dict(json.loads((Path(path) / "config.json").read_text()))

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        if not isinstance(d, dict):
            raise UnsupportedConfig("config", "must be a JSON object")
        _expect(d, "model_type", ("deepseek_v3",), "deepseek_v3")
        arch = d.get("architectures")
        if arch is not None and "DeepseekV3ForCausalLM" not in arch:
            raise UnsupportedConfig("architectures", f"needs DeepseekV3ForCausalLM, got {arch!r}")
        for name, allowed, default in _FIXED:
            _expect(d, name, allowed, default)
        dtype = d.get("torch_dtype", d.get("dtype"))
        if dtype is not None and dtype not in ("bfloat16", "float16", "float32"):
            raise UnsupportedConfig("torch_dtype", f"bfloat16, float16 or float32, got {dtype!r}")

        ints = {name: _int(d, name) for name in _REQUIRED_INT}
        if ints["qk_rope_head_dim"] % 2:
            raise UnsupportedConfig("qk_rope_head_dim", "must be even")
        heads, layers = ints["num_attention_heads"], ints["num_hidden_layers"]
        if d.get("num_key_value_heads", heads) not in (None, heads):
            raise UnsupportedConfig("num_key_value_heads", f"must equal the {heads} heads (MLA)")
        first_dense = _int(d, "first_k_dense_replace", 0, minimum=0)
        if first_dense > layers:
            raise UnsupportedConfig("first_k_dense_replace", f"{first_dense} > {layers} layers")

        experts, top_k = ints["n_routed_experts"], ints["num_experts_per_tok"]
        n_group, topk_group = _int(d, "n_group", 1), _int(d, "topk_group", 1)
        if experts % n_group or experts // n_group < 2:
            raise UnsupportedConfig("n_group", f"{experts} experts do not form {n_group} groups of "
                                    f"at least 2 (a group scores the sum of its top 2)")
        if topk_group > n_group:
            raise UnsupportedConfig("topk_group", f"{topk_group} exceeds n_group {n_group}")
        if top_k > topk_group * (experts // n_group):
            raise UnsupportedConfig("num_experts_per_tok", f"{top_k} > the kept groups' experts")
        norm_topk = d.get("norm_topk_prob", True)
        if not isinstance(norm_topk, bool):
            raise UnsupportedConfig("norm_topk_prob", f"must be a boolean, got {norm_topk!r}")
        # DeepSeek's demo configs use 0 for "no query compression"
        q_lora_rank = _int(d, "q_lora_rank") if d.get("q_lora_rank") else None
        max_pos = _int(d, "max_position_embeddings", 4096)
        return cls(
            **ints, first_k_dense_replace=first_dense, n_group=n_group, topk_group=topk_group,
            n_shared_experts=_int(d, "n_shared_experts", 0, minimum=0), norm_topk_prob=norm_topk,
            routed_scaling_factor=_positive(d.get("routed_scaling_factor", 1.0),
                                            "routed_scaling_factor"),
            q_lora_rank=q_lora_rank, rope=_parse_rope(d, max_pos), max_position_embeddings=max_pos,
            rms_norm_eps=_positive(d.get("rms_norm_eps", 1e-6), "rms_norm_eps"),
            fp8_block_size=_parse_fp8(d),
        )


def yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


_REQUIRED_INT = ("vocab_size hidden_size intermediate_size moe_intermediate_size num_hidden_layers "
                 "num_attention_heads n_routed_experts num_experts_per_tok kv_lora_rank "
                 "qk_nope_head_dim qk_rope_head_dim v_head_dim").split()
# (field, the values we serve, default): what DeepSeek-V3 ships, the only variant implemented
_FIXED = [
    ("moe_layer_freq", (1,), 1), ("topk_method", ("noaux_tc",), "noaux_tc"),
    ("scoring_func", ("sigmoid",), "sigmoid"), ("hidden_act", ("silu",), "silu"),
    ("attention_bias", (False,), False), ("tie_word_embeddings", (False,), False),
    ("ep_size", (1,), 1),
]


def _int(d: dict[str, Any], name: str, default: Any = None, minimum: int = 1) -> int:
    value = d.get(name, default)
    if value is None:
        raise UnsupportedConfig(name, "is required")
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UnsupportedConfig(name, f"must be an integer >= {minimum}, got {value!r}")
    return value


def _positive(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise UnsupportedConfig(field, f"must be a positive number, got {value!r}")
    return float(value)


def _expect(d: dict[str, Any], name: str, allowed: tuple, default: Any, prefix: str = "") -> None:
    if d.get(name, default) not in allowed:
        raise UnsupportedConfig(prefix + name, f"only {', '.join(map(repr, allowed))} supported, "
                                f"got {d.get(name)!r}")


def _parse_fp8(d: dict[str, Any]) -> tuple[int, int] | None:
    quant = d.get("quantization_config")
    if quant is None:
        return None
    _expect(quant, "quant_method", ("fp8",), None, "quantization_config.")
    _expect(quant, "fmt", ("e4m3",), "e4m3", "quantization_config.")
    block = quant.get("weight_block_size")
    if not (isinstance(block, list) and len(block) == 2
            and all(isinstance(b, int) and b > 0 for b in block)):
        raise UnsupportedConfig("quantization_config.weight_block_size",
                                f"expected [rows, cols], got {block!r}")
    return block[0], block[1]


def _parse_rope(d: dict[str, Any], max_pos: int) -> RopeConfig:
    theta, scaling = d.get("rope_theta", 10000.0), d.get("rope_scaling")
    params = d.get("rope_parameters")
    if scaling is None and isinstance(params, dict):  # transformers >= 5 spelling
        theta = params.get("rope_theta", theta)
        if params.get("rope_type", params.get("type", "default")) != "default":
            scaling = params
    theta = _positive(theta, "rope_theta")
    if scaling is None:
        return RopeConfig(theta=theta)
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind != "yarn":
        raise UnsupportedConfig("rope_scaling.type", f"only 'yarn' or none, got {kind!r}")
    original = scaling.get("original_max_position_embeddings")
    if not isinstance(original, int) or original <= 0:
        raise UnsupportedConfig("rope_scaling.original_max_position_embeddings",
                                f"required, got {original!r}")
    factor = scaling.get("factor")
    if factor is None:  # Hugging Face's fallback
        factor = max_pos / original
    factor = _positive(factor, "rope_scaling.factor")
    mscale, mscale_all_dim = scaling.get("mscale"), scaling.get("mscale_all_dim")
    attention_factor = scaling.get("attention_factor")
    if attention_factor is None and mscale and mscale_all_dim:
        attention_factor = yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim)
    return RopeConfig(
        theta=theta, yarn=True, factor=factor, original_max_position_embeddings=original,
        beta_fast=float(scaling.get("beta_fast") or 32),
        beta_slow=float(scaling.get("beta_slow") or 1),
        truncate=bool(scaling.get("truncate", True)),
        attention_factor=float(attention_factor or yarn_mscale(factor)),
        mscale_all_dim=float(mscale_all_dim or 0.0),
    )
