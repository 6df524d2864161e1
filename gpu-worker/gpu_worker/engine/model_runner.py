"""Owns the model and its paged latent cache; turns one step's chunks into one forward pass
(all-decode steps through the decode buffers, CUDA graphs on CUDA)."""
from __future__ import annotations

from itertools import accumulate

import torch

from gpu_worker.model.attention_metadata import AttentionMetadata

from .cuda_graph_runner import DecodeGraphs
from .scheduler import Chunk


class ModelRunner:
    def __init__(self, model, num_blocks: int, block_size: int = 64, device: str | torch.device = "cpu",
                 max_num_seqs: int = 256, max_model_len: int = 4096, cuda_graphs: bool = False):
        self.model = model
        self.block_size = block_size
        self.device = torch.device(device)
        # [num_layers, num_blocks + 1, block_size, kv_lora_rank + qk_rope_head_dim]; the last block
        # is the pad block that padding rows of a decode bucket write to.
        self.kv_cache = model.allocate_kv_cache(num_blocks + 1, block_size=block_size)
        self.decode = DecodeGraphs(model, self.kv_cache, block_size, max_num_seqs,
                                   -(-max_model_len // block_size), pad_block=num_blocks)
        if cuda_graphs:
            self.decode.capture()
        # Rank 0 of a tensor-parallel worker: a parallel.steps.StepBroadcaster that sends each step
        # and each disk-tier block write to the other ranks, whose runners replay them.
        self.step_listener = None

    @staticmethod
    def block_bytes(config, block_size: int, dtype: torch.dtype) -> int:
        latent = config.kv_lora_rank + config.qk_rope_head_dim
        return config.num_hidden_layers * block_size * latent * dtype.itemsize

    # Disk tier I/O: one block across all layers.
    def read_block(self, block_id: int) -> torch.Tensor:
        return self.kv_cache[:, block_id].to("cpu", copy=True)

    def write_block(self, block_id: int, latents: torch.Tensor) -> None:
        self.kv_cache[:, block_id].copy_(latents.to(self.kv_cache.device, self.kv_cache.dtype))
        if self.step_listener is not None:
            self.step_listener.write_block(block_id, latents)

    @torch.inference_mode()
    def run(self, chunks: list[Chunk]) -> torch.Tensor | None:
        """Forward one step; float32 logits [chunks that sample, vocab] in order."""
        if self.step_listener is not None:
            self.step_listener.step(chunks)
        sample_rows = [i for i, c in enumerate(chunks) if c.samples]
        if all(len(c.tokens) == 1 for c in chunks) and len(chunks) <= self.decode.max_bs:
            rows = [(c.tokens[0], c.start, c.block_table, c.table_key) for c in chunks]
            hidden = self.decode.run(rows)
        else:
            as_long = lambda x: torch.tensor(x, dtype=torch.long, device=self.device)
            ids = as_long([t for c in chunks for t in c.tokens])
            positions = as_long([c.start + i for c in chunks for i in range(len(c.tokens))])
            layout = [(c.block_table, c.start, len(c.tokens)) for c in chunks]
            meta = AttentionMetadata.build(layout, self.block_size, self.device)
            hidden = self.model.forward(ids, positions, meta, self.kv_cache)
            ends = list(accumulate(len(c.tokens) for c in chunks))
            sample_rows = [ends[i] - 1 for i in sample_rows]
        if not sample_rows:
            return None
        if len(sample_rows) < hidden.shape[0]:
            hidden = hidden[torch.tensor(sample_rows, device=hidden.device)]
        return self.model.compute_logits(hidden).float()
