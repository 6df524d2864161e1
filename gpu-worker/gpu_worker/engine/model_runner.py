"""Owns the model and its paged latent cache; turns a scheduled batch into one forward pass."""
from __future__ import annotations

import torch

from gpu_worker.model.attention_metadata import AttentionMetadata

from .scheduler import ScheduledSeq


class ModelRunner:
    def __init__(self, model, num_blocks: int, block_size: int = 64, device: str | torch.device = "cpu"):
        self.model = model
        self.block_size = block_size
        self.device = torch.device(device)
        # [num_layers, num_blocks, block_size, kv_lora_rank + qk_rope_head_dim]
        self.kv_cache = model.allocate_kv_cache(num_blocks, block_size=block_size)

    @staticmethod
    def block_bytes(config, block_size: int, dtype: torch.dtype) -> int:
        latent = config.kv_lora_rank + config.qk_rope_head_dim
        return config.num_hidden_layers * block_size * latent * torch.empty((), dtype=dtype).element_size()

    # Disk tier I/O: one block across all layers.
    def read_block(self, block_id: int) -> torch.Tensor:
        return self.kv_cache[:, block_id].to("cpu", copy=True)

    def write_block(self, block_id: int, latents: torch.Tensor) -> None:
        self.kv_cache[:, block_id].copy_(latents.to(self.kv_cache.device, self.kv_cache.dtype))

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
        return as_long(input_ids), as_long(positions), meta, as_long(sample_rows)

    @torch.inference_mode()
    def run(self, batch: list[ScheduledSeq]) -> torch.Tensor | None:
        """Forward the batch; float32 logits [num sequences that sample, vocab] in batch order."""
        input_ids, positions, meta, sample_rows = self.prepare(batch)
        hidden = self.model.forward(input_ids, positions, meta, self.kv_cache)
        if sample_rows.numel() == 0:
            return None
        return self.model.compute_logits(hidden[sample_rows]).float()
