"""Router semantics and expert dispatch, on hand-made inputs; the MoE layer on both kernel backends."""

import contextlib

import pytest
import torch

from gpu_worker.model.config import ModelConfig
from gpu_worker.model.moe import MoE, RoutedExperts, Router

from tests.engine.host_sync import HostSync
from tests.engine.test_no_host_sync import decode_step_logits  # the whole model through the runner
from tiny import CONFIGS, hf_config


def make_router(**overrides) -> Router:
    router = Router(ModelConfig.from_hf_dict(hf_config(**overrides)))
    router.weight.zero_()
    router.e_score_correction_bias.zero_()
    return router


def test_bias_steers_selection_but_not_weights():
    # 8 experts in 4 groups of 2; keep 2 groups; pick 3 experts
    router = make_router()
    logits = torch.tensor([[2.0, 1.0, -1.0, -2.0, 0.5, 0.4, -3.0, -3.0]])
    router.weight.copy_(torch.eye(8, 32))
    x = torch.nn.functional.pad(logits, (0, 24))
    weights, ids = router(x)
    assert sorted(ids[0].tolist()) == [0, 1, 4]  # groups 0 and 2 win (sums 3.0 and 0.9 before sigmoid)

    router.e_score_correction_bias.copy_(torch.tensor([0, 0, 0, 0, 0, 0, 5.0, 0.1]))
    weights, ids = router(x)
    chosen = ids[0].tolist()
    assert sorted(chosen) == [0, 1, 6]  # the bias lifts group 3 and expert 6 into the selection ...
    scores = torch.sigmoid(logits[0, chosen])
    assert torch.allclose(weights[0], scores / scores.sum() * 2.5)  # ... but the weights use raw scores


def test_experts_outside_kept_groups_are_never_chosen():
    router = make_router(n_routed_experts=16, n_group=4, topk_group=1, num_experts_per_tok=4)
    router.weight.normal_(generator=torch.Generator().manual_seed(0))
    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(1))
    _, ids = router(x)
    assert (ids // 4 == ids[:, :1] // 4).all()  # all four from a single group of four


def test_sorted_dispatch_equals_the_per_token_sum():
    config = ModelConfig.from_hf_dict(hf_config())
    experts = RoutedExperts(config, dtype=torch.float32)
    g = torch.Generator().manual_seed(2)
    experts.gate_up_proj.copy_(torch.randn(experts.gate_up_proj.shape, generator=g))
    experts.down_proj.copy_(torch.randn(experts.down_proj.shape, generator=g))
    x = torch.randn(10, 32, generator=g)
    ids = torch.stack([torch.randperm(8, generator=g)[:3] for _ in range(10)])
    weights = torch.rand(10, 3, generator=g)
    expected = torch.zeros(10, 32)
    for t in range(10):
        for k in range(3):
            gate, up = (experts.gate_up_proj[ids[t, k]] @ x[t]).split(16)
            expected[t] += weights[t, k] * (experts.down_proj[ids[t, k]] @ (torch.nn.functional.silu(gate) * up))
    assert torch.allclose(experts(x, weights, ids), expected, atol=1e-4)


# every test config at a decode's and a prefill's token count in float32; one in bfloat16
LAYER_CASES = [(name, tokens, torch.float32) for name in sorted(CONFIGS) for tokens in (1, 21)]
LAYER_CASES.append(("qlora_yarn_8groups_all_moe", 9, torch.bfloat16))


@pytest.mark.parametrize("name, tokens, dtype", LAYER_CASES)
def test_triton_moe_layer_equals_the_torch_reference(name, tokens, dtype):
    config = ModelConfig.from_hf_dict(hf_config(name))
    reference, fused = (MoE(config, dtype, kernel_backend=b) for b in ("torch", "triton"))
    g = torch.Generator().manual_seed(0)
    for param in reference.parameters():
        param.copy_(torch.randn(param.shape, generator=g) / param.shape[-1] ** 0.5)
    fused.load_state_dict(reference.state_dict())
    # a single shared expert rides along with the routed ones
    assert fused.folds_shared == (hf_config(name)["n_shared_experts"] == 1)
    x = torch.randn(tokens, 32, generator=torch.Generator().manual_seed(tokens)).to(dtype)
    expected, out = reference(x).float(), fused(x).float()
    if dtype == torch.bfloat16:
        # both round to bf16 (8 significant bits), at different points: within a few of its steps
        assert (out - expected).abs().max() <= 2**-5 * expected.abs().max()
        return
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    chosen = [moe.gate(x)[1].sort(dim=-1).values for moe in (fused, reference)]
    assert torch.equal(*chosen)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_only_triton_moe_layers_keep_a_decode_step_free_of_host_syncs(monkeypatch, backend):
    monkeypatch.setenv("GPU_WORKER_KERNEL_BACKEND", backend)
    # the torch reference counts tokens per expert on the host
    with pytest.raises(HostSync) if backend == "torch" else contextlib.nullcontext():
        assert torch.isfinite(decode_step_logits(hf_config())).all()
