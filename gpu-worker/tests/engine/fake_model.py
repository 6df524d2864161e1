"""A tiny paged-attention stand-in with the model interface, for fast engine tests.

Each token's latent depends on its id and position; a query attends over the latents its
sequence's block table points at. Wrong slots, block tables or context lengths change the
logits, which is what these tests need to see.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch


class FakeModel(torch.nn.Module):
    def __init__(self, vocab_size: int = 512, dim: int = 16, layers: int = 2, seed: int = 0, max_len: int = 4096):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.config = SimpleNamespace(num_hidden_layers=layers, kv_lora_rank=dim - 4, qk_rope_head_dim=4,
                                      vocab_size=vocab_size, max_position_embeddings=max_len)
        self.embed = torch.nn.Parameter(torch.randn(vocab_size, dim, generator=g))
        self.head = torch.nn.Parameter(torch.randn(dim, vocab_size, generator=g))
        self.dim, self.layers = dim, layers
        self.forward_tokens = 0

    def allocate_kv_cache(self, num_blocks: int, block_size: int = 64) -> torch.Tensor:
        return torch.zeros(self.layers, num_blocks, block_size, self.dim)

    def _latent(self, ids, positions):
        freqs = torch.arange(1, self.dim + 1, dtype=torch.float32) * 0.01
        return self.embed[ids] + torch.sin(positions[:, None].float() * freqs)

    def forward(self, input_ids, positions, meta, kv_cache):
        self.forward_tokens += input_ids.numel()
        bs = meta.block_size
        latent = self._latent(input_ids, positions)
        flat = kv_cache.view(self.layers, -1, self.dim)
        for layer in range(self.layers):
            flat[layer, meta.slot_mapping] = latent * (layer + 1)
        out = torch.empty_like(latent)
        cu = meta.cu_query_lens.tolist()
        for i in range(len(cu) - 1):
            ctx = int(meta.context_lens[i])
            table = meta.block_tables[i].long()
            slots = table[torch.arange(ctx) // bs] * bs + torch.arange(ctx) % bs
            keys = flat[self.layers - 1, slots] / self.layers
            q = latent[cu[i]:cu[i + 1]]
            n = q.shape[0]
            scores = q @ keys.T / self.dim ** 0.5
            qpos = torch.arange(ctx - n, ctx)[:, None]
            scores = scores.masked_fill(torch.arange(ctx)[None, :] > qpos, float("-inf"))
            out[cu[i]:cu[i + 1]] = torch.softmax(scores, -1) @ keys
        return out

    def compute_logits(self, hidden):
        return (hidden @ self.head).float()

    def forward_dense(self, input_ids):
        b, s = input_ids.shape
        outs = []
        for row in input_ids:
            pos = torch.arange(s)
            lat = self._latent(row, pos)
            scores = lat @ lat.T / self.dim ** 0.5
            scores = scores.masked_fill(torch.triu(torch.ones(s, s, dtype=torch.bool), 1), float("-inf"))
            outs.append(self.compute_logits(torch.softmax(scores, -1) @ lat))
        return torch.stack(outs)
