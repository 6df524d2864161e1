"""For test/e2e/tensor-parallel.test.ts: writes one set of random DeepSeek-V3 weights (toy width, the real
tokenizer) twice, in DeepSeek's FP8 layout and in float32, and prints as JSON
transformers' greedy continuation of each chat prompt on the float32 checkpoint.

    python tensor_parallel_models.py OUT_DIR MAX_TOKENS PROMPT...

transformers renders the prompt with the tokenizer's own chat template, not the worker's renderer, so the
comparison also checks that the worker builds the same prompt tokens. Token bytes follow the byte-level
BPE alphabet, as the API's logprobs report them."""

import json
import shutil
import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer, DeepseekV3ForCausalLM

from gpu_worker.model.config import ModelConfig
from gpu_worker.model.make_checkpoint import (DEFAULT_TOKENIZER_DIR, EMBEDDED_CONFIG, TOKENIZER_FILES,
                                              random_weights, write_checkpoint)

SEED = 11  # not the embedded model's seed: these answers cannot come from the suite's own workers

# The embedded model's widths, except that every slice of 2 ranks is a whole number of 128-wide FP8 blocks
# (8 heads a rank: q_b and kv_b 8x32 = 256 rows, o_proj 8x16 = 128 columns; MLPs 256 wide), so the ranks
# can keep FP8 weights (`--fp8-weights keep`) as at V3's real widths; fewer layers and experts, for speed.
CONFIG = {**EMBEDDED_CONFIG, "num_attention_heads": 16, "num_key_value_heads": 16, "intermediate_size": 256,
          "moe_intermediate_size": 256, "num_hidden_layers": 3, "n_routed_experts": 16, "n_group": 4,
          "topk_group": 2, "num_experts_per_tok": 4}


def byte_of_char() -> dict[str, int]:
    """GPT-2's byte-level alphabet: printable bytes stand for themselves, the rest are shifted past 255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def write(out: Path, weights: dict, **how) -> Path:
    write_checkpoint(out, CONFIG, weights, **how)
    for name in TOKENIZER_FILES:
        shutil.copyfile(DEFAULT_TOKENIZER_DIR / name, out / name)
    return out


def main() -> None:
    out, max_tokens, prompts = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    torch.set_num_threads(1)
    weights = random_weights(ModelConfig.from_hf_dict(CONFIG), seed=SEED)
    fp8 = write(out / "fp8", weights, dtype=torch.bfloat16, quantize_fp8=True)
    f32 = write(out / "float32", weights, dtype=torch.float32)

    tokenizer = AutoTokenizer.from_pretrained(f32)
    model = DeepseekV3ForCausalLM.from_pretrained(f32, dtype=torch.float32).eval()
    bytes_of = byte_of_char()
    answers = []
    for prompt in prompts:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            tokenize=True, return_dict=False)
        with torch.no_grad():
            generated = model.generate(torch.tensor([ids]), max_new_tokens=max_tokens, do_sample=False)[0, len(ids):]
        tokens = tokenizer.convert_ids_to_tokens(generated.tolist())
        answers.append({
            "prompt_tokens": len(ids),
            "token_ids": generated.tolist(),
            # special tokens (none expected) are not in the byte alphabet: their UTF-8 then
            "token_bytes": [[bytes_of[c] for c in t] if all(c in bytes_of for c in t) else list(t.encode()) for t in tokens],
            "text": tokenizer.decode(generated, skip_special_tokens=True),
        })
    print(json.dumps({"fp8": str(fp8), "float32": str(f32), "transformers": answers}))


if __name__ == "__main__":
    main()
