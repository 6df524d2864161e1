"""The whole model with the Triton kernels (in Triton's interpreter here) equals the torch reference
backend, step by step: prefills, a chunk over a cached prefix, a mixed step, split-K decodes."""

import dataclasses

import pytest
import torch

from gpu_worker.model.attention_metadata import AttentionMetadata
from gpu_worker.model.backend import resolve_kernel_backend
from gpu_worker.model.loader import load_model

from tiny import CONFIGS, rel_err, write_tiny

BLOCK = 4
TOLERANCE = 1e-5


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def models(request, tmp_path_factory):
    path = write_tiny(tmp_path_factory.mktemp(request.param), request.param, seed=7)
    return {name: load_model(path, kernel_backend=name) for name in ("torch", "triton")}


def test_triton_backend_equals_torch_backend(models):
    assert type(models["triton"].layers[0].self_attn.attention).__name__ == "TritonAttention"
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(0, 101, (n,), generator=g) for n in (9, 14, 1, 20)]
    tables = [[3, 11, 6, 0, 15], [8, 1, 13, 4, 19], [2, 10, 17, 7, 9], [5, 12, 18, 14, 16]]
    # (sequence, cached, new) per step, decodes first as the scheduler packs them
    steps = [
        [(0, 0, 8), (1, 0, 6), (2, 0, 1)],  # fresh prompts, one of a single token
        [(2, 1, 1), (1, 6, 8), (3, 0, 12)],  # a decode, a chunk over a cached prefix, a prompt
        [(0, 8, 1), (2, 2, 1), (1, 14, 1), (3, 12, 7)],  # three decodes and a chunk
        [(0, 9, 1), (1, 15, 1), (2, 3, 1), (3, 19, 1)],  # decodes only
    ]
    caches = {name: m.allocate_kv_cache(20, BLOCK) for name, m in models.items()}
    extended = [torch.cat([s, torch.randint(0, 101, (4,), generator=g)]) for s in seqs]
    for number, step in enumerate(steps):
        layout = [(tables[i], cached, new) for i, cached, new in step]
        ids = torch.cat([extended[i][cached:cached + new] for i, cached, new in step])
        positions = torch.cat([torch.arange(cached, cached + new) for _, cached, new in step])
        meta = AttentionMetadata.build(layout, block_size=BLOCK)
        if number == 3:
            meta = dataclasses.replace(meta, num_splits=3)  # split-K over 2..20 token contexts
        logits = {name: m.compute_logits(m(ids, positions, meta, caches[name])) for name, m in models.items()}
        assert rel_err(logits["triton"], logits["torch"]) <= TOLERANCE, number
    assert rel_err(caches["triton"], caches["torch"]) <= TOLERANCE


def test_backend_choice(monkeypatch):
    monkeypatch.delenv("GPU_WORKER_KERNEL_BACKEND", raising=False)
    assert resolve_kernel_backend(None, "cpu") == "torch"
    assert resolve_kernel_backend("triton", "cpu") == "triton"  # the interpreter is on in these tests
    monkeypatch.setenv("GPU_WORKER_KERNEL_BACKEND", "triton")
    assert resolve_kernel_backend(None, "cpu") == "triton"
    assert resolve_kernel_backend("torch", "cpu") == "torch"  # the flag wins over the environment
    with pytest.raises(ValueError, match="expected one of torch, triton"):
        resolve_kernel_backend("cuda-graphs", "cpu")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        resolve_kernel_backend("triton", "cpu")
