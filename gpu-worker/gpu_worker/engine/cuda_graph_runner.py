"""Decode steps over static buffers, replayed as CUDA graphs for bucketed batch sizes: inputs go
through one pinned host buffer in one copy; padding rows touch only the pad block, which the block
manager never hands out. Off CUDA the same buffers run eagerly (what the CPU tests check).
"""
from __future__ import annotations

import torch

from gpu_worker.model.attention_metadata import AttentionMetadata

# Input fields per row, in the packed buffer's order; the block table follows them.
_FIELDS = ("input_ids", "positions", "slot_mapping", "context_lens")


def batch_buckets(max_num_seqs: int) -> list[int]:
    """1, 2, 4, 8, then every 16 up to max_num_seqs (and max_num_seqs itself): padding stays under
    16 rows, as in nano-vllm, with few graphs to capture."""
    small = [b for b in (1, 2, 4, 8) if b < max_num_seqs]
    return small + list(range(16, max_num_seqs, 16)) + [max_num_seqs]


class DecodeGraphs:
    def __init__(self, model, kv_cache: torch.Tensor, block_size: int, max_num_seqs: int, max_blocks: int,
                 pad_block: int):
        self.model, self.kv_cache = model, kv_cache
        self.block_size, self.max_blocks, self.pad_block = block_size, max_blocks, pad_block
        self.buckets = batch_buckets(max_num_seqs)
        self.max_bs = self.buckets[-1]
        device = kv_cache.device
        size = self.max_bs * (len(_FIELDS) + max_blocks)
        self.host = torch.empty(size, dtype=torch.int64, pin_memory=device.type == "cuda")
        self.packed = torch.zeros(size, dtype=torch.int64, device=device)
        self.inputs = self._views(self.packed)
        self.host_inputs = {k: v.numpy() for k, v in self._views(self.host).items()}
        self.cu_query_lens = torch.arange(self.max_bs + 1, device=device)
        self.copied: torch.cuda.Event | None = None
        # per row: (key of the sequence whose table it holds, entries written); tables only grow while a
        # sequence decodes, so a row that keeps its sequence gets only the new entries
        self.written: list[tuple | None] = [None] * self.max_bs
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.outputs: dict[int, torch.Tensor] = {}

    def _views(self, buf: torch.Tensor) -> dict[str, torch.Tensor]:
        n = self.max_bs
        views = {name: buf[i * n:(i + 1) * n] for i, name in enumerate(_FIELDS)}
        views["block_tables"] = buf[len(_FIELDS) * n:].view(n, self.max_blocks)
        return views

    def bucket(self, n: int) -> int:
        return next(b for b in self.buckets if b >= n)

    def _forward(self, bs: int, max_context_len: int) -> torch.Tensor:
        x = self.inputs
        meta = AttentionMetadata(
            cu_query_lens=self.cu_query_lens[:bs + 1], context_lens=x["context_lens"][:bs],
            block_tables=x["block_tables"][:bs], slot_mapping=x["slot_mapping"][:bs],
            block_size=self.block_size, max_query_len=1, max_context_len=max_context_len)
        return self.model.forward(x["input_ids"][:bs], x["positions"][:bs], meta, self.kv_cache)

    @torch.inference_mode()
    def capture(self) -> None:
        """Capture every bucket, largest first, all in one memory pool (a smaller bucket's activations
        fit in the space of a larger one's)."""
        self._fill([])
        self.packed.copy_(self.host)
        pool = torch.cuda.graph_pool_handle()
        static_context = self.max_blocks * self.block_size
        for bs in reversed(self.buckets):
            self._forward(bs, static_context)  # warm-up: lazy initialisation, autotuning
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self.outputs[bs] = self._forward(bs, static_context)
            self.graphs[bs] = graph
        torch.cuda.synchronize()

    def _fill(self, rows: list[tuple]) -> int:
        """Write rows (token id, position, block table[, key]) and padding up to the bucket into the
        host buffer. A row's key names its sequence's table (None: write it all); stale entries past
        a context are never read."""
        if self.copied is not None:
            self.copied.synchronize()  # the last step's transfer has left the buffer (it has, after its sampling)
        n = len(rows)
        bs = self.bucket(n) if n else self.max_bs
        h, bsz = self.host_inputs, self.block_size
        for i, (token, pos, table, *key) in enumerate(rows):
            h["input_ids"][i], h["positions"][i] = token, pos
            h["slot_mapping"][i] = table[pos // bsz] * bsz + pos % bsz
            h["context_lens"][i] = pos + 1
            key = key[0] if key else None
            held = self.written[i]
            start = held[1] if key is not None and held is not None and held[0] == key else 0
            h["block_tables"][i, start:len(table)] = table[start:]
            self.written[i] = (key, len(table))
        # a padding row decodes token 0 at position 0 of the pad block
        for name, value in zip(_FIELDS, (0, 0, self.pad_block * bsz, 1)):
            h[name][n:bs] = value
        h["block_tables"][n:bs, 0] = self.pad_block
        self.written[n:bs] = [None] * (bs - n)
        return bs

    @torch.inference_mode()
    def run(self, rows: list[tuple]) -> torch.Tensor:
        """Hidden states [n, hidden] of one decode step over rows (token id, position, block table[, key])."""
        bs = self._fill(rows)
        self.packed.copy_(self.host, non_blocking=True)
        if self.packed.is_cuda:
            self.copied = torch.cuda.Event()
            self.copied.record()
        graph = self.graphs.get(bs)
        if graph is not None:
            graph.replay()
            return self.outputs[bs][:len(rows)]
        max_context = max(row[1] for row in rows) + 1
        return self._forward(bs, max_context)[:len(rows)]
