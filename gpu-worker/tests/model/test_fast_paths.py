"""Decode fast paths equal the plain computations: greedy tokens, float32-widened small products, the
shared experts run inside the gathered routed-expert products."""

import pytest
import torch

from gpu_worker.model import moe as moe_module
from gpu_worker.model.attention_metadata import AttentionMetadata
from gpu_worker.model.config import ModelConfig
from gpu_worker.model.layers import first_argmax, linear
from gpu_worker.model.loader import load_model
from gpu_worker.model.moe import MoE

from tiny import hf_config, rel_err, write_tiny


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("width", [129280, 4096, 101])
def test_first_argmax_equals_argmax_including_ties(dtype, width):
    g = torch.Generator().manual_seed(width)
    x = torch.randn(7, width, generator=g).to(dtype)
    x[1, [5, width - 1]] = 50.0  # tie across chunks: the first wins
    x[2, [width // 2, width // 2 + 1]] = 50.0  # tie inside a chunk
    x[3] = 1.0  # all equal
    x[4, -1] = 60.0  # maximum in the last entry
    x[5, 0] = 60.0
    x[6] = torch.full((width,), -3.0).to(dtype)
    assert torch.equal(first_argmax(x), x.argmax(dim=-1))
    assert torch.equal(first_argmax(x[:1]), x[:1].argmax(dim=-1))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_greedy_next_tokens_equals_argmax_of_compute_logits(tmp_path, dtype):
    model = load_model(write_tiny(tmp_path, seed=3), dtype=dtype)
    g = torch.Generator().manual_seed(0)
    for rows in (1, 5, 32):
        hidden = torch.randn(rows, model.config.hidden_size, generator=g).to(dtype)
        assert torch.equal(model.greedy_next_tokens(hidden), model.compute_logits(hidden).argmax(dim=-1))
    # after a real decode step
    cache = model.allocate_kv_cache(4, 4)
    meta = AttentionMetadata.build([([0, 1], 0, 5)], block_size=4)
    hidden = model(torch.arange(5), torch.arange(5), meta, cache)
    assert torch.equal(model.greedy_next_tokens(hidden), model.compute_logits(hidden).argmax(dim=-1))


def test_greedy_next_tokens_on_the_embedded_vocab(embedded_checkpoint_dir):
    model = load_model(embedded_checkpoint_dir, dtype=torch.bfloat16)
    hidden = torch.randn(32, model.config.hidden_size, generator=torch.Generator().manual_seed(1)).bfloat16()
    for rows in (1, 32):
        assert torch.equal(model.greedy_next_tokens(hidden[:rows]), model.compute_logits(hidden[:rows]).argmax(-1))


def test_widened_linear_equals_float32_product_rounded_once():
    g = torch.Generator().manual_seed(4)
    weight = torch.nn.Parameter(torch.randn(96, 48, generator=g).bfloat16(), requires_grad=False)
    x = torch.randn(3, 48, generator=g).bfloat16()
    assert torch.equal(linear(x, weight), (x.float() @ weight.float().T).bfloat16())
    weight.mul_(2)  # an in-place change (what the loader does) invalidates the cached float32 copy
    assert torch.equal(linear(x, weight), (x.float() @ weight.float().T).bfloat16())
    big = torch.randn(200, 48, generator=g).bfloat16()  # many rows: the model dtype's kernel
    assert torch.allclose(linear(big, weight).float(), (big.float() @ weight.float().T), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("n_shared", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_shared_experts_inside_the_gathered_products_equal_separate(monkeypatch, n_shared, dtype):
    config = ModelConfig.from_hf_dict(hf_config(n_shared_experts=n_shared))
    layer = MoE(config, dtype=dtype)
    g = torch.Generator().manual_seed(n_shared)
    for p in layer.parameters():
        p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    for tokens in (1, 3, 10):
        x = torch.randn(tokens, config.hidden_size, generator=g).to(dtype)
        fused = layer(x)
        assert getattr(layer, "_fused", None) is not None
        monkeypatch.setattr(moe_module, "FUSED_STACK_ELEMENTS", 0)
        separate = layer(x)
        monkeypatch.undo()
        # float32: the same sums; bf16: the fused path rounds once where the separate one rounds each part
        assert rel_err(fused.float(), separate.float()) <= (1e-6 if dtype == torch.float32 else 1e-2), tokens
