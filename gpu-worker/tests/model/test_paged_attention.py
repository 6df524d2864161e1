"""The paged, packed serving path agrees with the cacheless dense path, in every batch shape."""

import dataclasses

import pytest
import torch

from gpu_worker.model.attention_backend import TorchAttention
from gpu_worker.model.attention_metadata import AttentionMetadata
from gpu_worker.model.loader import load_model

from tiny import rel_err, write_tiny

TOLERANCE = 1e-4
BLOCK = 4


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_model(write_tiny(tmp_path_factory.mktemp("paged"), seed=5), dtype=torch.float32)


def tokens(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 101, (n,), generator=torch.Generator().manual_seed(seed))


def run_step(model, cache, steps, expanded=False):
    """steps: [(ids, block_table, num_cached)] -> logits of every new token, packed. `expanded`
    sends decodes through the prefill path too."""
    meta = AttentionMetadata.build([(t, cached, len(ids)) for ids, t, cached in steps], BLOCK)
    if expanded:
        meta = dataclasses.replace(meta, num_decodes=0)
    ids = torch.cat([ids for ids, _, _ in steps])
    positions = torch.cat([torch.arange(cached, cached + len(ids)) for ids, _, cached in steps])
    return model.compute_logits(model(ids, positions, meta, cache))


def dense(model, seq):
    return model.forward_dense(seq[None])[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_absorbed_decode_equals_expanded(tmp_path, dtype):
    model = load_model(write_tiny(tmp_path, seed=5), dtype=dtype)
    for batch in (1, 3, 6):
        seqs = [tokens(n, 20 + n) for n in (5, 12, 9, 7, 6, 10)[:batch]]
        tables = [[4 * b + i for i in range(4)] for b in range(batch)]
        caches = [model.allocate_kv_cache(4 * batch, BLOCK) for _ in range(2)]
        for cache in caches:
            run_step(model, cache, [(s[:-1], t, 0) for s, t in zip(seqs, tables)])
        decode = [(s[-1:], t, len(s) - 1) for s, t in zip(seqs, tables)]
        absorbed = run_step(model, caches[0], decode)
        expanded = run_step(model, caches[1], decode, expanded=True)
        if dtype == torch.bfloat16:
            assert rel_err(absorbed, expanded) <= 2e-2, batch
            assert (absorbed.argmax(-1) == expanded.argmax(-1)).float().mean() >= 0.5
            continue
        assert rel_err(absorbed, expanded) <= TOLERANCE
        # both wrote the same latents (later layers see inputs that differ by rounding only)
        assert torch.equal(caches[0][0], caches[1][0])
        assert torch.allclose(caches[0], caches[1], atol=1e-5)


def test_packed_steps_then_batched_decodes_equal_each_sequence_alone(model):
    seqs = [tokens(n + 3, 20 + n) for n in (7, 13, 10, 1)]
    alone = [dense(model, s) for s in seqs]
    tables = [[5, 11, 15], [2, 8, 0, 14], [3, 6, 13, 9], [1]]
    cache = model.allocate_kv_cache(16, BLOCK)
    cached, ends = [0, 6, 9, 0], [len(s) - 3 for s in seqs]
    # fresh prompts of equal length, packed
    prefixes = run_step(model, cache, [(s[:6], t, 0) for s, t in zip(seqs[1:3], tables[1:3])])
    assert rel_err(prefixes, torch.cat([a[:6] for a in alone[1:3]])) <= TOLERANCE
    run_step(model, cache, [(seqs[2][6:9], tables[2], 6)])
    # one step mixing a fresh prompt, a chunk over a cached prefix, a lone token, a 1-token prompt
    steps = [list(zip(cached, ends))] + [[(e + i, e + i + 1) for e in ends] for i in range(3)]
    for step in steps:  # then three batched decodes of unequal contexts (2 to 14 tokens)
        got = run_step(model, cache, [(s[c:e], t, c) for s, t, (c, e) in zip(seqs, tables, step)])
        assert rel_err(got, torch.cat([a[c:e] for a, (c, e) in zip(alone, step)])) <= TOLERANCE


def test_padded_dense_batch_equals_each_sequence_alone(model):
    # right padding never affects earlier positions under the causal mask
    a, b = tokens(9, 1), tokens(15, 2)
    batch = model.forward_dense(torch.stack([torch.cat([a, torch.zeros(6, dtype=torch.long)]), b]))
    assert rel_err(batch[0, :9], dense(model, a)) <= TOLERANCE
    assert rel_err(batch[1], dense(model, b)) <= TOLERANCE


def test_cache_holds_normalised_latent_and_rotated_rope_key(model):
    seq = tokens(6, 7)
    cache = model.allocate_kv_cache(4, BLOCK)
    run_step(model, cache, [(seq, [2, 0], 0)])
    c = model.config
    assert cache.shape == (c.num_hidden_layers, 4, BLOCK, c.kv_lora_rank + c.qk_rope_head_dim)
    attn = model.layers[0].self_attn
    x = model.layers[0].input_layernorm(torch.nn.functional.embedding(seq, model.embed_tokens))
    _, _, entry = attn._project(x, model.rotary.lookup(torch.arange(6)))
    stored = torch.cat([cache[0, 2], cache[0, 0, :2]])
    assert torch.allclose(stored, entry)
    # the latent half is RMS-normalised (times its weight)
    latent = stored[:, :c.kv_lora_rank] / attn.kv_a_layernorm.weight
    assert torch.allclose(latent.pow(2).mean(-1), torch.ones(6), atol=1e-4)


def test_a_prefill_chunk_leaves_the_decoders_in_the_absorbed_form(model, monkeypatch):
    seen = []

    class Recording(TorchAttention):
        def decode(self, query, cache, meta, latent_dim):
            seen.append(("decode", query.shape[0], meta.max_context_len))
            return super().decode(query, cache, meta, latent_dim)

        def prefill(self, q_nope, *args):
            seen.append(("prefill", q_nope.shape[0], args[-2].context_lens))
            return super().prefill(q_nope, *args)

    monkeypatch.setattr(model.layers[0].self_attn, "attention", Recording())
    seqs = [tokens(n, 80 + n) for n in (6, 9, 11)]
    cache = model.allocate_kv_cache(12, BLOCK)
    tables = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    run_step(model, cache, [(s[:5], t, 0) for s, t in zip(seqs, tables)])
    seen.clear()
    run_step(model, cache, [(seqs[0][5:6], tables[0], 5), (seqs[1][5:6], tables[1], 5),
                            (seqs[2][5:], tables[2], 5)])
    # two decodes read their 6-token contexts in latent space; only the chunk's sequence is expanded
    assert seen == [("decode", 2, 6), ("prefill", 6, [11])]
