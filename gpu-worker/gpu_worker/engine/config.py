from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EngineConfig:
    block_size: int = 64
    num_cache_blocks: int | None = None  # None: from memory_fraction (CUDA), else 512
    memory_fraction: float = 0.9         # of the device for weights, activations and cache
    max_batch_tokens: int = 2048         # tokens per forward step (decodes + prefill chunks)
    max_num_seqs: int = 256
    max_model_len: int | None = None     # None: the model's max_position_embeddings
    disk_cache_dir: str | None = None
    disk_cache_max_bytes: int = 10 * 2**30
    cache_salt: str = ""                 # model fingerprint: keeps checkpoints' disk entries apart
