import json
import math
from pathlib import Path

import pytest

import gpu_worker
from gpu_worker.model.config import ModelConfig, UnsupportedConfig

from tiny import hf_config

# deepseek-ai/DeepSeek-V3's config.json, as the memory plan reads it
V3_CONFIG = Path(gpu_worker.__file__).parent / "configs" / "deepseek-v3.json"
DEEPSEEK_V3 = json.loads(V3_CONFIG.read_text())


def test_reads_deepseek_v3_config():
    c = ModelConfig.from_hf_dict(DEEPSEEK_V3)
    assert (c.hidden_size, c.num_hidden_layers, c.first_k_dense_replace) == (7168, 61, 3)
    assert (c.n_routed_experts, c.num_experts_per_tok, c.n_group, c.topk_group) == (256, 8, 8, 4)
    assert c.kv_cache_dim == 576 and c.qk_head_dim == 192
    assert c.fp8_block_size == (128, 128)
    assert c.rope.yarn and c.rope.attention_factor == 1.0
    assert math.isclose(c.softmax_scale, 0.1352338, rel_tol=1e-6)
    assert not c.is_moe_layer(2) and c.is_moe_layer(3)


def test_q_lora_rank_may_be_null_or_zero():
    assert ModelConfig.from_hf_dict({**DEEPSEEK_V3, "q_lora_rank": None}).q_lora_rank is None
    assert ModelConfig.from_hf_dict({**DEEPSEEK_V3, "q_lora_rank": 0}).q_lora_rank is None


@pytest.mark.parametrize(
    "field, change",
    [
        ("scoring_func", {"scoring_func": "softmax"}),
        ("topk_method", {"topk_method": "greedy"}),
        ("n_group", {"n_group": 7}),
        ("topk_group", {"topk_group": 9}),
        ("num_experts_per_tok", {"num_experts_per_tok": 200}),
        ("rope_scaling.type", {"rope_scaling": {"type": "linear", "factor": 2}}),
        ("kv_lora_rank", {"kv_lora_rank": None}),
        ("qk_rope_head_dim", {"qk_rope_head_dim": 63}),
        ("num_key_value_heads", {"num_key_value_heads": 8}),
        ("hidden_act", {"hidden_act": "gelu"}),
        ("quantization_config.quant_method", {"quantization_config": {"quant_method": "awq"}}),
        ("model_type", {"model_type": "llama"}),
        ("tie_word_embeddings", {"tie_word_embeddings": True}),
        ("first_k_dense_replace", {"first_k_dense_replace": 99}),
    ],
)
def test_refuses_unservable_config_naming_the_field(field, change):
    with pytest.raises(UnsupportedConfig) as info:
        ModelConfig.from_hf_dict({**DEEPSEEK_V3, **change})
    assert info.value.field == field
    assert field in str(info.value)


def test_missing_field_is_named():
    d = hf_config()
    del d["v_head_dim"]
    with pytest.raises(UnsupportedConfig, match="v_head_dim"):
        ModelConfig.from_hf_dict(d)
