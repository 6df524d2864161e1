"""Assemble a worker from a checkpoint directory: model, engine, prompt renderer, app state."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from gpu_worker.engine.async_engine import AsyncEngine
from gpu_worker.engine.config import EngineConfig
from gpu_worker.engine.engine import LLMEngine
from gpu_worker.model.loader import load_model
from gpu_worker.parallel.launcher import agree_on_cache_blocks
from gpu_worker.parallel.steps import StepBroadcaster
from gpu_worker.prompt.chat_format import EOS
from gpu_worker.prompt.renderer import PromptRenderer

from .app import WorkerState


def checkpoint_fingerprint(checkpoint: str | Path, dtype: torch.dtype) -> str:
    """Disk-cache entries are only valid for the exact weights and cache dtype that wrote them."""
    path = Path(checkpoint)
    h = hashlib.sha256(str(dtype).encode())
    h.update((path / "config.json").read_bytes())
    for f in sorted(path.glob("*.safetensors")):
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 16))  # the header: every tensor's name, dtype, shape and offsets
            # Samples of the weights themselves, so retrained weights of the same shapes differ;
            # hashing hundreds of GB in full would hold up every start.
            for i in range(1, 17):
                fh.seek(size * i // 17)
                h.update(fh.read(4096))
    return h.hexdigest()[:32]


def build_state(checkpoint: str | Path, engine_config: EngineConfig, served_models: list[str],
                secret: str | None = None, device: str = "cpu", dtype: torch.dtype = torch.float32,
                max_reasoning_tokens: int = 32768, kernel_backend: str | None = None, ranks=None, control=None,
                keep_fp8: bool | None = None) -> WorkerState:
    """ranks, control: rank 0 of a tensor-parallel worker (parallel.launcher.Ranks and the control group)."""
    model = load_model(checkpoint, device=device, dtype=dtype, kernel_backend=kernel_backend, keep_fp8=keep_fp8)
    renderer = PromptRenderer(checkpoint)
    if not engine_config.cache_salt:
        engine_config.cache_salt = checkpoint_fingerprint(checkpoint, dtype)
    eos = renderer.tokenizer.token_to_id(EOS)
    if control is not None:  # the same cache on every rank, and every step replayed by the others
        blocks = agree_on_cache_blocks(model, engine_config, device, control)
        engine_config.num_cache_blocks = blocks
    engine = LLMEngine(model, engine_config, eos_token_ids=(eos,), device=device)
    if control is not None:
        engine.runner.step_listener = StepBroadcaster(control)
    return WorkerState(engine=AsyncEngine(engine), renderer=renderer, served_models=served_models, secret=secret,
                       max_reasoning_tokens=max_reasoning_tokens, ranks=ranks)
