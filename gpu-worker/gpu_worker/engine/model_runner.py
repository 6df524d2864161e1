"""Owns the model and its paged latent cache; turns a scheduled batch into one forward pass."""
from __future__ import annotations

import torch

from .scheduler import ScheduledSeq


def _attention_metadata_class():
    from gpu_worker.model.attention_metadata import AttentionMetadata
    return AttentionMetadata


class ModelRunner:
    def __init__(self, model, num_blocks: int, block_size: int = 64, device: str | torch.device = "cpu"):
        self.model = model
        self.block_size = block_size
        self.device = torch.device(device)
        # [num_layers, num_blocks, block_size, kv_lora_rank + qk_rope_head_dim]
        self.kv_cache = model.allocate_kv_cache(num_blocks, block_size=block_size)
        self.metadata_cls = getattr(model, "attention_metadata_cls", None) or _attention_metadata_class()

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
        bs = self.block_size
        input_ids, positions, slots, cu, ctx, sample_rows = [], [], [], [0], [], []
        max_blocks = max(len(s.seq.block_table) for s in batch)
        tables = []
        for s in batch:
            seq, start = s.seq, s.seq.num_computed_tokens
            end = start + s.num_new_tokens
            input_ids.extend(seq.token_ids[start:end])
            positions.extend(range(start, end))
            table = seq.block_table
            slots.extend(table[p // bs] * bs + p % bs for p in range(start, end))
            cu.append(cu[-1] + s.num_new_tokens)
            ctx.append(end)
            tables.append(table + [0] * (max_blocks - len(table)))
            if s.samples:
                sample_rows.append(cu[-1] - 1)
        dev = self.device
        as_long = lambda x: torch.tensor(x, dtype=torch.long, device=dev)
        meta = self.metadata_cls(
            cu_query_lens=torch.tensor(cu, dtype=torch.int32, device=dev),
            context_lens=torch.tensor(ctx, dtype=torch.int32, device=dev),
            block_tables=torch.tensor(tables, dtype=torch.int32, device=dev),
            slot_mapping=as_long(slots),
            block_size=bs,
        )
        return as_long(input_ids), as_long(positions), meta, as_long(sample_rows)

    @torch.inference_mode()
    def run(self, batch: list[ScheduledSeq]) -> torch.Tensor | None:
        """Forward the batch; float32 logits [num sequences that sample, vocab] in batch order."""
        input_ids, positions, meta, sample_rows = self.prepare(batch)
        hidden = self.model.forward(input_ids, positions, meta, self.kv_cache)
        if sample_rows.numel() == 0:
            return None
        return self.model.compute_logits(hidden[sample_rows]).float()
