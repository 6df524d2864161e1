"""The fused router kernel against the model's Router (the torch reference)."""

import pytest
import torch
import torch.nn.functional as F

from gpu_worker.kernels.router import fused_route
from gpu_worker.model.config import ModelConfig
from gpu_worker.model.moe import Router
from tests.model.tiny import hf_config

# (experts, groups, groups kept, top-k, normalised): group sizes and counts that are not powers of two,
# one group, all groups kept, DeepSeek-V3's 8 groups keep 4 with top-8
CASES = [(8, 4, 2, 3, True), (16, 8, 3, 4, True), (64, 8, 4, 8, True), (24, 4, 2, 5, True),
         (12, 3, 1, 2, True), (8, 1, 1, 2, False), (16, 4, 4, 6, True), (32, 8, 2, 6, True)]


def random_router(experts, groups, kept, top_k, normalised, seed=0) -> Router:
    config = ModelConfig.from_hf_dict(hf_config(
        n_routed_experts=experts, n_group=groups, topk_group=kept, num_experts_per_tok=top_k,
        norm_topk_prob=normalised, routed_scaling_factor=2.5 if normalised else 1.0))
    router = Router(config)
    g = torch.Generator().manual_seed(seed)
    router.weight.copy_(torch.randn(router.weight.shape, generator=g))
    # biases of both signs: a negative biased score must still lose to a dropped group's -inf
    router.e_score_correction_bias.copy_(torch.rand(experts, generator=g) - 0.5)
    return router


def by_expert(weights, ids):
    order = ids.argsort(dim=-1)
    return weights.gather(1, order), ids.gather(1, order)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "E{}-G{}-keep{}-k{}-norm{}".format(*c))
@pytest.mark.parametrize("tokens", [1, 7, 37])
def test_fused_router_equals_the_reference(case, tokens):
    router = random_router(*case)
    x = torch.randn(tokens, 32, generator=torch.Generator().manual_seed(tokens))
    expected_weights, expected_ids = by_expert(*router(x))
    logits = F.linear(x.float(), router.weight)
    weights, ids = fused_route(logits, router.e_score_correction_bias, router.top_k, router.n_group,
                               router.topk_group, router.normalise, router.scale)
    assert ids.dtype == torch.int64 and weights.dtype == torch.float32
    weights, ids = by_expert(weights, ids)
    # the same experts (so none from a dropped group: tests/model/test_moe.py), the same weights
    assert torch.equal(ids, expected_ids)
    torch.testing.assert_close(weights, expected_weights, rtol=1e-6, atol=1e-7)
