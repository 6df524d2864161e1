"""Tiny DeepSeek-V3 configurations for the tests (small vocab, float32 checkpoints)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from gpu_worker.model.config import ModelConfig
from gpu_worker.model.deepseek_v3 import DeepseekV3ForCausalLM
from gpu_worker.model.make_checkpoint import EMBEDDED_CONFIG, random_weights, write_checkpoint

# rope: original_max_position_embeddings small, so the test positions exercise interpolation
YARN = {**EMBEDDED_CONFIG["rope_scaling"], "original_max_position_embeddings": 16}
# The embedded model's architecture, narrower, shallower, with fewer experts and a 101-token vocab
BASE = {
    **EMBEDDED_CONFIG, "vocab_size": 101, "hidden_size": 32, "intermediate_size": 48,
    "moe_intermediate_size": 16, "num_hidden_layers": 3, "num_attention_heads": 4,
    "num_key_value_heads": 4, "n_routed_experts": 8, "num_experts_per_tok": 3, "n_group": 4,
    "topk_group": 2, "q_lora_rank": 24, "kv_lora_rank": 16, "qk_nope_head_dim": 8,
    "qk_rope_head_dim": 4, "v_head_dim": 8, "max_position_embeddings": 640, "rope_scaling": YARN,
}

# name -> overrides of BASE. Each covers a feature the issue asks to be checked against transformers.
CONFIGS = {
    "qlora_yarn_4groups_1dense": {},
    "no_qlora_plain_rope_2dense": {"q_lora_rank": None, "rope_scaling": None, "first_k_dense_replace": 2},
    "qlora_yarn_8groups_all_moe": {
        "n_routed_experts": 16, "n_group": 8, "topk_group": 3, "num_experts_per_tok": 4,
        "first_k_dense_replace": 0, "n_shared_experts": 2, "num_hidden_layers": 2,
        "rope_scaling": {**YARN, "mscale": 0.707, "mscale_all_dim": 0.707},
    },
    "no_qlora_yarn_1group_unnormalised": {
        "q_lora_rank": None, "n_group": 1, "topk_group": 1, "norm_topk_prob": False,
        "routed_scaling_factor": 1.0, "num_hidden_layers": 2,
        # no mscale fields: transformers then scales cos/sin by yarn_mscale(factor) instead of the softmax
        "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8},
    },
}


def hf_config(name: str = "qlora_yarn_4groups_1dense", **overrides) -> dict:
    d = copy.deepcopy(BASE)
    d.update(copy.deepcopy(CONFIGS[name]))
    d.update(overrides)
    return d


def write_tiny(out_dir: Path, name: str = "qlora_yarn_4groups_1dense", seed: int = 0,
               dtype: torch.dtype = torch.float32, **kwargs) -> Path:
    d = hf_config(name)
    write_checkpoint(out_dir, d, random_weights(ModelConfig.from_hf_dict(d), seed), dtype=dtype, **kwargs)
    return out_dir


def random_model(config: dict) -> DeepseekV3ForCausalLM:
    """A float32 model with N(0, 1/fan_in) weights (seed 0), without a checkpoint."""
    torch.manual_seed(0)
    model = DeepseekV3ForCausalLM(ModelConfig.from_hf_dict(config), dtype=torch.float32).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape) / p.shape[-1] ** 0.5)
    return model


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.float() - expected.float()).abs().max() / expected.float().abs().max()).item()
