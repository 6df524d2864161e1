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


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory):
    path = write_tiny(tmp_path_factory.mktemp(request.param), request.param, seed=3)
    ours = load_model(path, dtype=torch.float32)
    reference = HFDeepseekV3.from_pretrained(path, dtype=torch.float32).eval()
    return ours, reference


def test_dense_forward_matches_transformers(pair):
    ours, reference = pair
    ids = torch.randint(0, ours.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(ids).logits
    assert rel_err(ours.forward_dense(ids), expected) <= TOLERANCE


def test_paged_prefill_and_decode_match_transformers(pair):
    ours, reference = pair
    ids = torch.randint(0, ours.config.vocab_size, (20,), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = reference(ids[None]).logits[0]
    cache = ours.allocate_kv_cache(num_blocks=8, block_size=4)
    table = [6, 2, 7, 0, 5]
    prompt = 13
    meta = AttentionMetadata.build([(table, 0, prompt)], block_size=4)
    logits = [ours.compute_logits(ours(ids[:prompt], torch.arange(prompt), meta, cache))]
    for pos in range(prompt, len(ids)):
        meta = AttentionMetadata.build([(table, pos, 1)], block_size=4)
        logits.append(ours.compute_logits(ours(ids[pos : pos + 1], torch.tensor([pos]), meta, cache)))
    assert rel_err(torch.cat(logits), expected) <= TOLERANCE
