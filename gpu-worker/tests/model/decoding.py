"""Decode steps over a paged cache for the small-decode tests: prompts prefilled by the module path, then
one decode step, or a greedy decode loop."""

from __future__ import annotations

import torch

from gpu_worker.model.attention_metadata import AttentionMetadata

BLOCK = 4


def prefilled(model, lengths, seed, blocks: int = 4):
    """Caches holding prompts of `lengths` (`blocks` blocks each, not in sequence order) and their
    decode steps' inputs: (prompts, block tables, cache); each prompt's last token is not yet cached."""
    g = torch.Generator().manual_seed(seed)
    seqs = [torch.randint(0, model.config.vocab_size, (n,), generator=g) for n in lengths]
    tables = [[blocks * b + i for i in range(blocks)] for b in range(len(seqs))][::-1]
    cache = model.allocate_kv_cache(blocks * len(seqs), BLOCK)
    meta = AttentionMetadata.build([(t, 0, len(s) - 1) for s, t in zip(seqs, tables)], block_size=BLOCK)
    model(torch.cat([s[:-1] for s in seqs]), torch.cat([torch.arange(len(s) - 1) for s in seqs]), meta, cache)
    return seqs, tables, cache


def decode_hidden(model, seqs, tables, cache):
    """One decode step of every sequence's last token -> (hidden [B, dim], metadata)."""
    meta = AttentionMetadata.build([(t, len(s) - 1, 1) for s, t in zip(seqs, tables)], block_size=BLOCK)
    return model(torch.cat([s[-1:] for s in seqs]), torch.tensor([len(s) - 1 for s in seqs]), meta, cache), meta


def decode_step(model, seqs, tables, cache):
    hidden, meta = decode_hidden(model, seqs, tables, cache)
    return model.compute_logits(hidden), meta


def greedy_decode(model, seqs, tables, cache, steps: int) -> torch.Tensor:
    """`steps` greedy decode steps from the prompts' last tokens -> tokens [B, steps]."""
    tokens = torch.stack([s[-1] for s in seqs])
    done = [len(s) - 1 for s in seqs]
    out = []
    for _ in range(steps):
        meta = AttentionMetadata.build([(t, n, 1) for t, n in zip(tables, done)], block_size=BLOCK)
        tokens = model.greedy_next_tokens(model(tokens, torch.tensor(done), meta, cache))
        out.append(tokens)
        done = [n + 1 for n in done]
    return torch.stack(out, dim=1)
