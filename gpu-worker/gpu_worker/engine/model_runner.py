"""Owns the model and its paged latent cache; turns a scheduled batch into one forward pass.

Steps in which every sequence has one new token go through the decode buffers (CUDA graphs on
CUDA); steps with prefill chunks run eagerly.
"""
from __future__ import annotations

import torch

from gpu_worker.model.attention_metadata import AttentionMetadata

from .cuda_graph_runner import DecodeGraphs
from .scheduler import ScheduledSeq


class ModelRunner:
    def __init__(self, model, num_blocks: int, block_size: int = 64, device: str | torch.device = "cpu",
                 max_num_seqs: int = 256, max_model_len: int = 4096, use_cuda_graphs: bool | None = None):
        self.model = model
        self.block_size = block_size
        self.device = torch.device(device)
        # [num_layers, num_blocks + 1, block_size, kv_lora_rank + qk_rope_head_dim]; the last block is
        # the pad block that padding rows of a decode bucket write to.
        self.kv_cache = model.allocate_kv_cache(num_blocks + 1, block_size=block_size)
        max_blocks = -(-max_model_len // block_size)
        graphs = self.device.type == "cuda" if use_cuda_graphs is None else use_cuda_graphs
        self.decode = DecodeGraphs(model, self.kv_cache, block_size, max_num_seqs, max_blocks, pad_block=num_blocks)
        if graphs:
            self.decode.capture()
        # Rank 0 of a tensor-parallel worker: a parallel.steps.StepBroadcaster that sends each step and
        # each disk-tier block write to the other ranks, whose runners replay them (same collectives).
        self.step_listener = None

    @staticmethod
    def block_bytes(config, block_size: int, dtype: torch.dtype) -> int:
        latent = config.kv_lora_rank + config.qk_rope_head_dim
        return config.num_hidden_layers * block_size * latent * torch.empty((), dtype=dtype).element_size()

    # Disk tier I/O: one block across all layers.
    def read_block(self, block_id: int) -> torch.Tensor:
        return self.kv_cache[:, block_id].to("cpu", copy=True)

    def write_block(self, block_id: int, latents: torch.Tensor) -> None:
        self.kv_cache[:, block_id].copy_(latents.to(self.kv_cache.device, self.kv_cache.dtype))
        if self.step_listener is not None:
            self.step_listener.write_block(block_id, latents)

    def prepare(self, batch: list[ScheduledSeq]):
        input_ids, positions, sample_rows, layout = [], [], [], []
        offset = 0
        for s in batch:
            seq, start = s.seq, s.seq.num_computed_tokens
            end = start + s.num_new_tokens
            input_ids.extend(seq.token_ids[start:end])
            positions.extend(range(start, end))
            layout.append((seq.block_table, start, s.num_new_tokens))
            offset += s.num_new_tokens
            if s.samples:
                sample_rows.append(offset - 1)
        as_long = lambda x: torch.tensor(x, dtype=torch.long, device=self.device)
        meta = AttentionMetadata.build(layout, self.block_size, self.device)
        return as_long(input_ids), as_long(positions), meta, sample_rows

    def is_decode(self, batch: list[ScheduledSeq]) -> bool:
        return all(s.num_new_tokens == 1 for s in batch) and len(batch) <= self.decode.max_bs

    @torch.inference_mode()
    def forward(self, batch: list[ScheduledSeq]) -> tuple[torch.Tensor, list[int]]:
        """(hidden states [tokens, hidden], rows of the sequences that sample)."""
        if self.is_decode(batch):
            rows = [(s.seq.token_ids[s.seq.num_computed_tokens], s.seq.num_computed_tokens, s.seq.block_table,
                     s.seq.table_key) for s in batch]
            return self.decode.run(rows), [i for i, s in enumerate(batch) if s.samples]
        input_ids, positions, meta, sample_rows = self.prepare(batch)
        return self.model.forward(input_ids, positions, meta, self.kv_cache), sample_rows

    @torch.inference_mode()
    def run(self, batch: list[ScheduledSeq]) -> torch.Tensor | None:
        """Forward the batch; float32 logits [num sequences that sample, vocab] in batch order."""
        if self.step_listener is not None:
            self.step_listener.step(batch)
        hidden, sample_rows = self.forward(batch)
        if not sample_rows:
            return None
        if len(sample_rows) < hidden.shape[0]:
            hidden = hidden[torch.tensor(sample_rows, device=hidden.device)]
        return self.model.compute_logits(hidden).float()
