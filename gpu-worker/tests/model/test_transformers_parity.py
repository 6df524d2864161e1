"""Our logits equal transformers' DeepseekV3ForCausalLM loading the same checkpoint (float32).

Notes on matching semantics (transformers 5.23):
- rope: transformers' `rope_interleave=True` (the default) rotates adjacent pairs like DeepSeek's
  reference; we do the same, so no weight permutation is involved.
- group masking: transformers 5.x masks dropped groups with -inf, as DeepSeek's reference does (older
  copies used 0.0). The random correction biases are positive anyway, so every biased score is > 0 and
  the two maskings would pick the same experts even against an older reference.
- router precision: both compute router logits, sigmoid and bias in float32.
"""

import pytest
import torch
from transformers import DeepseekV3ForCausalLM as HFDeepseekV3

from gpu_worker.model.attention_metadata import AttentionMetadata
from gpu_worker.model.loader import load_model

from tiny import CONFIGS, rel_err, write_tiny

TOLERANCE = 1e-4


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_dense_and_paged_forward_match_transformers(name, tmp_path):
    path = write_tiny(tmp_path, name, seed=3)
    ours = load_model(path, dtype=torch.float32)
    reference = HFDeepseekV3.from_pretrained(path, dtype=torch.float32).eval()
    ids = torch.randint(0, ours.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(ids).logits
    assert rel_err(ours.forward_dense(ids), expected) <= TOLERANCE
    # the serving path on the second sequence: a prompt, a chunk over its cached prefix, then decodes
    cache = ours.allocate_kv_cache(num_blocks=8, block_size=4)
    table = [6, 2, 7, 0, 5, 3]
    logits = []
    for start, end in [(0, 9), (9, 13)] + [(p, p + 1) for p in range(13, 24)]:
        meta = AttentionMetadata.build([(table, start, end - start)], block_size=4)
        hidden = ours(ids[1, start:end], torch.arange(start, end), meta, cache)
        logits.append(ours.compute_logits(hidden))
    assert rel_err(torch.cat(logits), expected[1]) <= TOLERANCE
