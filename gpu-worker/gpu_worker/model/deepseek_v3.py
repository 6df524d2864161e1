"""DeepSeek-V3 causal LM. `forward` runs a packed batch against the paged latent cache (serving);
`forward_dense` runs [B, S] batches with no cache (the tests' reference path)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gpu_worker.parallel.collectives import gather_vocab, vocab_parallel_embedding
from gpu_worker.parallel.state import current

from . import fp8
from .attention_metadata import AttentionMetadata
from .backend import resolve_kernel_backend
from .config import ModelConfig
from .layers import RMSNorm, SwiGLU, empty_param
from .mla import MLAttention
from .moe import MoE
from .rope import RotaryTable


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, index: int, dtype: torch.dtype, device, kernel_backend):
        super().__init__()
        dim, eps = config.hidden_size, config.rms_norm_eps
        self.input_layernorm = RMSNorm(dim, eps, dtype, device)
        self.self_attn = MLAttention(config, dtype, device, kernel_backend)
        self.post_attention_layernorm = RMSNorm(dim, eps, dtype, device)
        if config.is_moe_layer(index):
            self.mlp = MoE(config, dtype, device, kernel_backend)
        else:
            self.mlp = SwiGLU(dim, config.intermediate_size, dtype, device, tensor_parallel=True,
                              quantized=fp8.keeps_fp8(config), kernel_backend=kernel_backend)

    def forward(self, h, freqs, meta: AttentionMetadata, cache: torch.Tensor) -> torch.Tensor:
        h = h + self.self_attn(self.input_layernorm(h), freqs, meta, cache)
        return h + self.mlp(self.post_attention_layernorm(h))

    def forward_dense(self, h, freqs) -> torch.Tensor:
        h = h + self.self_attn.forward_dense(self.input_layernorm(h), freqs)
        return h + self.mlp(self.post_attention_layernorm(h).flatten(0, 1)).view_as(h)

    def checkpoint_layout(self, prefix: str) -> dict[str, tuple[torch.Tensor, tuple]]:
        return {
            f"{prefix}.input_layernorm.weight": (self.input_layernorm.weight, ()),
            f"{prefix}.post_attention_layernorm.weight": (self.post_attention_layernorm.weight, ()),
            **self.self_attn.checkpoint_layout(f"{prefix}.self_attn"),
            **self.mlp.checkpoint_layout(f"{prefix}.mlp"),
        }


class DeepseekV3ForCausalLM(nn.Module):
    def __init__(self, config: ModelConfig, dtype: torch.dtype = torch.float32, device=None,
                 kernel_backend: str | None = None):
        super().__init__()
        self.config = config
        self.dtype = dtype
        self.kernel_backend = resolve_kernel_backend(kernel_backend, device or "cpu")
        # vocab-parallel: this rank's rows of the embedding and lm_head (the last rank's tail is padding)
        rows, self.vocab_part = current().padded_part(config.vocab_size)
        self.embed_tokens = empty_param(rows, config.hidden_size, dtype=dtype, device=device)
        self.layers = nn.ModuleList(DecoderLayer(config, i, dtype, device, self.kernel_backend)
                                    for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype, device)
        self.lm_head = empty_param(rows, config.hidden_size, dtype=dtype, device=device)
        self.rotary = RotaryTable(config, device=device)

    @property
    def device(self) -> torch.device:
        return self.embed_tokens.device

    def checkpoint_layout(self) -> dict[str, tuple | None]:
        """Hugging Face tensor name -> (our parameter, index of the slice it fills[, this rank's
        part of the checkpoint tensor, default all of it]), or None for another rank's tensor."""
        vocab = (slice(0, self.vocab_part.stop - self.vocab_part.start),)
        layout = {
            "model.embed_tokens.weight": (self.embed_tokens, vocab, (self.vocab_part,)),
            "model.norm.weight": (self.norm.weight, ()),
            "lm_head.weight": (self.lm_head, vocab, (self.vocab_part,)),
        }
        for i, layer in enumerate(self.layers):
            layout.update(layer.checkpoint_layout(f"model.layers.{i}"))
        return layout

    def allocate_kv_cache(self, num_blocks: int, block_size: int = 64) -> torch.Tensor:
        """[layers, num_blocks, block_size, kv_lora_rank + qk_rope_head_dim]: per token the normalised
        latent then the rotated rope key."""
        c = self.config
        return torch.zeros(c.num_hidden_layers, num_blocks, block_size, c.kv_cache_dim,
                           dtype=self.dtype, device=self.device)

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata,
                kv_cache: torch.Tensor) -> torch.Tensor:
        """Packed new tokens [T] at positions [T] -> final hidden states [T, hidden] (before the
        final norm, which compute_logits applies). Writes the new tokens' latents into kv_cache."""
        freqs = self.rotary.lookup(positions)
        h = vocab_parallel_embedding(input_ids, self.embed_tokens)
        for i, layer in enumerate(self.layers):
            h = layer(h, freqs, meta, kv_cache[i])
        return h

    @torch.inference_mode()
    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [N, hidden] from forward -> float32 logits [N, vocab]."""
        return gather_vocab(F.linear(self.norm(hidden), self.lm_head), self.config.vocab_size).float()

    @torch.inference_mode()
    def forward_dense(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B, S] token ids (positions 0..S-1, no cache) -> float32 logits [B, S, vocab]."""
        freqs = self.rotary.lookup(torch.arange(input_ids.shape[1], device=input_ids.device))
        h = vocab_parallel_embedding(input_ids, self.embed_tokens)
        for layer in self.layers:
            h = layer.forward_dense(h, freqs)
        return self.compute_logits(h)
