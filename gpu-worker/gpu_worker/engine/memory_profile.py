"""How many cache blocks fit on a CUDA device: the peak of the largest step the scheduler makes
(max_num_seqs decodes plus a max_batch_tokens chunk, with sampling) sets the activation headroom,
and the CUDA graphs' pool (one pure decode step's peak) is set aside too.
"""
from __future__ import annotations

import torch

from gpu_worker.model.attention_metadata import AttentionMetadata

from .config import EngineConfig
from .sampler import Sampler, SamplingBatch
from .sequence import SamplingParams, Sequence

# Decode rows of the profile attend this many tokens (or max_model_len if shorter): long enough
# that attention's per-step scratch is counted, without pretending every sequence is at the
# longest context at once (the cache could not hold that).
PROFILE_CONTEXT = 8192


def _peak(device: torch.device, run) -> int:
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    run()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


@torch.inference_mode()
def peak_step_bytes(model, config: EngineConfig, max_model_len: int,
                    device: torch.device) -> tuple[int, int]:
    """(peak bytes of the largest mixed step, of the largest pure decode step)."""
    bs, chunk, decodes = config.block_size, config.max_batch_tokens, config.max_num_seqs
    context = min(max_model_len, PROFILE_CONTEXT)
    ctx_blocks, chunk_blocks = -(-context // bs), -(-chunk // bs)
    # Every decode row reads the same blocks: the contents do not matter, only the shapes.
    layout = [(list(range(ctx_blocks)), context - 1, 1)] * decodes
    layout.append((list(range(ctx_blocks, ctx_blocks + chunk_blocks)), 0, chunk))
    positions = torch.tensor([context - 1] * decodes + list(range(chunk)), device=device)
    sample_rows = torch.arange(decodes + 1, device=device)
    sample_rows[-1] = positions.numel() - 1
    scratch = model.allocate_kv_cache(ctx_blocks + chunk_blocks, block_size=bs)
    params = SamplingParams(temperature=0.7, top_p=0.9, frequency_penalty=0.1)
    seqs = [Sequence(f"profile-{i}", [0], params) for i in range(decodes + 1)]
    meta = AttentionMetadata.build(layout, bs, device)
    decode_meta = AttentionMetadata.build(layout[:-1], bs, device)

    def step(meta, rows, positions):
        hidden = model.forward(torch.zeros_like(positions), positions, meta, scratch)
        logits = model.compute_logits(hidden[rows])
        Sampler().choose(logits, SamplingBatch(seqs[:rows.numel()], device, None))

    def decode_step():
        step(decode_meta, sample_rows[:-1], positions[:decodes])

    # What layers derive from their weights on first use and keep (MLA's absorbed W_UK / W_UV) is
    # built by this unmeasured step, so it counts once, in what is held, and not again in a peak.
    decode_step()
    mixed = _peak(device, lambda: step(meta, sample_rows, positions))
    decode = _peak(device, decode_step)
    del scratch, meta, decode_meta
    torch.cuda.empty_cache()
    return mixed, decode


def cache_blocks_that_fit(model, config: EngineConfig, max_model_len: int, device: torch.device,
                          block_bytes: int, cuda_graphs: bool) -> tuple[int, dict]:
    """(blocks, the sizing figures): memory_fraction of the device, less what is held now
    (weights), less the profiled peaks."""
    mixed, decode = peak_step_bytes(model, config, max_model_len, device)
    graph_pool = decode if cuda_graphs else 0
    counts = (config.max_num_seqs + 1) * model.config.vocab_size * 4  # the sampler's OutputCounts
    total = torch.cuda.get_device_properties(device).total_memory
    held = torch.cuda.memory_allocated(device)
    budget = int(total * config.memory_fraction) - held - mixed - graph_pool - counts
    blocks = budget // block_bytes
    figures = {"total_bytes": total, "held_bytes": held, "step_peak_bytes": mixed,
               "graph_pool_bytes": graph_pool, "penalty_counts_bytes": counts,
               "block_bytes": block_bytes, "blocks": blocks}
    if blocks < 1:
        raise RuntimeError(f"no room for the KV cache: {figures}")
    return blocks, figures
