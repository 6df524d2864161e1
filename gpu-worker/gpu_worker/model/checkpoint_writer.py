"""Write Hugging Face-format DeepSeek-V3 checkpoints with seeded random weights.

Used by `make_checkpoint` (the embedded default model) and by the tests (tiny reference configs).
Weights are scaled so activations stay O(1) through the layers, which keeps routing and attention
non-trivial; correction biases are positive.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from . import fp8
from .config import ModelConfig
from .deepseek_v3 import DeepseekV3ForCausalLM

# Tensors DeepSeek's FP8 checkpoints keep in higher precision.
_NOT_QUANTIZED = ("embed_tokens", "lm_head", "norm", "layernorm", "mlp.gate.")


def tensor_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Hugging Face tensor name -> shape, for every tensor the model expects."""
    model = DeepseekV3ForCausalLM(config, device="meta")
    return {name: tuple(param[index].shape) for name, (param, index, *_) in model.checkpoint_layout().items()}


def random_weights(config: ModelConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic float32 weights for `config`, by Hugging Face name (FP8 scales are not weights:
    write_checkpoint(quantize_fp8=True) computes them)."""
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for name, shape in sorted(tensor_shapes(config).items()):
        if name.endswith("_scale_inv"):
            continue
        if name.endswith("e_score_correction_bias"):
            tensor = torch.rand(shape, generator=generator) * 0.2
        elif name.endswith("norm.weight"):
            tensor = 1.0 + 0.1 * torch.randn(shape, generator=generator)
        elif name == "model.embed_tokens.weight":
            tensor = torch.randn(shape, generator=generator)
        else:  # [out, in] projections
            tensor = torch.randn(shape, generator=generator) / math.sqrt(shape[-1])
        weights[name] = tensor
    return weights


def write_checkpoint(out_dir: str | Path, hf_config: dict[str, Any],
                     weights: dict[str, torch.Tensor], dtype: torch.dtype = torch.bfloat16,
                     quantize_fp8: bool = False, max_shard_bytes: int | None = None) -> Path:
    """Write config.json and model.safetensors (or shards + index) under out_dir.

    quantize_fp8: 2-D projection weights are stored as float8_e4m3fn with 128x128 `weight_scale_inv`
    blocks and config.json gets DeepSeek's quantization_config."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = dict(hf_config, torch_dtype=str(dtype).removeprefix("torch."))
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in weights.items():
        if quantize_fp8 and tensor.dim() == 2 and not any(part in name for part in _NOT_QUANTIZED):
            tensors[name], tensors[name + "_scale_inv"] = fp8.quantize(tensor)
        elif name.endswith("e_score_correction_bias"):
            tensors[name] = tensor.to(torch.float32).contiguous()
        else:
            tensors[name] = tensor.to(dtype).contiguous()
    if quantize_fp8:
        config["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3",
                                         "quant_method": "fp8", "weight_block_size": [128, 128]}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    for stale in out.glob("model*.safetensors*"):  # shards and index of an earlier write
        stale.unlink()
    shards = _split(tensors, max_shard_bytes)
    if len(shards) == 1:
        save_file(shards[0], out / "model.safetensors", metadata={"format": "pt"})
        return out
    weight_map = {}
    for i, shard in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, out / file, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, file))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return out


def _split(tensors: dict[str, torch.Tensor], max_bytes: int | None) -> list[dict[str, torch.Tensor]]:
    if max_bytes is None:
        return [tensors]
    shards, current, size = [], {}, 0
    for name in sorted(tensors):
        nbytes = tensors[name].numel() * tensors[name].element_size()
        if current and size + nbytes > max_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = tensors[name]
        size += nbytes
    shards.append(current)
    return shards
