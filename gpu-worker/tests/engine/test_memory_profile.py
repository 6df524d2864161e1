"""The cache sizing arithmetic and the profiling step's shapes, on CPU (the peak itself is read from
CUDA's allocator, on a GPU only)."""
from types import SimpleNamespace

import torch

from gpu_worker.engine import memory_profile
from gpu_worker.engine.config import EngineConfig
from tests.model.tiny import hf_config, random_model


def test_profiling_step_runs_the_largest_batch_and_chunk(monkeypatch):
    model, tokens, measured = random_model(hf_config()), [], []
    forward = model.forward

    def counting(ids, *args):
        tokens.append(ids.numel())
        return forward(ids, *args)

    def fake_peak(device, run):
        measured.append(len(tokens))
        run()
        return 1000 * len(measured)
    monkeypatch.setattr(model, "forward", counting)
    monkeypatch.setattr(memory_profile, "_peak", fake_peak)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    config = EngineConfig(block_size=8, max_num_seqs=5, max_batch_tokens=24)
    mixed, decode = memory_profile.peak_step_bytes(model, config, max_model_len=40, device=torch.device("cpu"))
    assert (mixed, decode) == (1000, 2000)
    # a decode step first, unmeasured (weights built on first use), then every decode plus a whole
    # chunk, then the decodes alone
    assert tokens == [5, 5 + 24, 5] and measured == [1, 2]


def test_cache_takes_what_the_fraction_leaves(monkeypatch):
    monkeypatch.setattr(memory_profile, "peak_step_bytes", lambda *a: (300, 100))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: SimpleNamespace(total_memory=10_000))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda d: 2_000)
    model = SimpleNamespace(config=SimpleNamespace(vocab_size=4))
    config = EngineConfig(max_num_seqs=9, memory_fraction=0.9)
    counts = (9 + 1) * 4 * 4
    blocks, figures = memory_profile.cache_blocks_that_fit(model, config, 64, torch.device("cpu"), 50, cuda_graphs=True)
    assert blocks == (9_000 - 2_000 - 300 - 100 - counts) // 50
    eager, _ = memory_profile.cache_blocks_that_fit(model, config, 64, torch.device("cpu"), 50, cuda_graphs=False)
    assert eager == (9_000 - 2_000 - 300 - counts) // 50 and figures["step_peak_bytes"] == 300
