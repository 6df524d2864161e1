"""The fused MoE kernels against the model's torch reference (experts_reference), at awkward shapes."""

import pytest
import torch
import torch.nn.functional as F

from gpu_worker.kernels.fused_moe import fused_experts
from gpu_worker.kernels.moe_align import align_by_expert
from gpu_worker.model import fp8
from gpu_worker.model.moe import experts_reference
from tests.engine.host_sync import no_host_sync


def random_experts(experts, dim, inter, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    gate_up = torch.randn(experts, 2 * inter, dim, generator=g) / dim**0.5
    down = torch.randn(experts, dim, inter, generator=g) / inter**0.5
    return gate_up.to(dtype), down.to(dtype)


def random_routing(tokens, experts, top_k, seed=0, only=None):
    """Distinct experts per token (from `only` when given) and positive weights."""
    g = torch.Generator().manual_seed(seed)
    pool = torch.arange(experts) if only is None else torch.tensor(only)
    ids = torch.stack([pool[torch.randperm(len(pool), generator=g)[:top_k]] for _ in range(tokens)])
    return torch.rand(tokens, top_k, generator=g) + 0.1, ids


def close(out, expected):
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


# (tokens, experts, top-k, dim, inter): one token among 64 experts; more tokens than a block; top-8;
# sizes that are no multiple of any block; one expert; prefill-like (64-row blocks)
CASES = [(1, 64, 6, 32, 16), (37, 8, 3, 32, 16), (5, 16, 8, 48, 24), (19, 5, 2, 40, 20),
         (3, 1, 1, 16, 8), (45, 2, 2, 32, 16)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "T{}-E{}-k{}-dim{}-inter{}".format(*c))
def test_fused_experts_equal_the_reference(case):
    tokens, experts, top_k, dim, inter = case
    gate_up, down = random_experts(experts, dim, inter)
    weights, ids = random_routing(tokens, experts, top_k)
    x = torch.randn(tokens, dim, generator=torch.Generator().manual_seed(1))
    expected = experts_reference(x, weights, ids, gate_up, down)
    close(fused_experts(x, weights, ids, gate_up, down), expected)


def test_experts_no_token_chose_and_ids_held_elsewhere():
    gate_up, down = random_experts(16, 32, 16, seed=2)
    weights, ids = random_routing(9, 16, 3, seed=3, only=[2, 3, 11, 12])  # 12 of 16 get nothing
    x = torch.randn(9, 32, generator=torch.Generator().manual_seed(4))
    expected = experts_reference(x, weights, ids, gate_up, down)
    close(fused_experts(x, weights, ids, gate_up, down), expected)
    # ids outside [0, E) (another rank's experts) add nothing, as if their weight were zero
    foreign, zeroed = ids.clone(), weights.clone()
    foreign[:, 0] = torch.tensor([-1, 16, 40] * 3)
    zeroed[:, 0] = 0
    close(fused_experts(x, weights, foreign, gate_up, down),
          experts_reference(x, zeroed, ids, gate_up, down))


def test_bfloat16_and_no_tokens():
    gate_up, down = random_experts(8, 64, 32, seed=5, dtype=torch.bfloat16)
    weights, ids = random_routing(11, 8, 2, seed=6)
    x = torch.randn(11, 64, generator=torch.Generator().manual_seed(7)).bfloat16()
    out = fused_experts(x, weights, ids, gate_up, down)
    assert out.dtype == torch.bfloat16
    expected = experts_reference(x.float(), weights, ids, gate_up.float(), down.float())
    # bf16 rounds the activations and the output (8 bits): a few ulp of the largest output
    assert (out.float() - expected).abs().max() <= 2**-6 * expected.abs().max()
    empty = fused_experts(x[:0], weights[:0], ids[:0], gate_up, down)
    assert empty.shape == (0, 64)


def test_alignment_pads_each_expert_to_whole_blocks_without_host_sync():
    ids = torch.tensor([[3, 0], [3, 1], [0, 3], [5, 3]])
    with no_host_sync():
        pairs, block_experts = align_by_expert(ids, num_experts=4, block=4)  # 5 is held elsewhere
    flat = ids.flatten()
    assert pairs.shape[0] == 4 * block_experts.shape[0] >= 8 + 4 * 3
    for b, expert in enumerate(block_experts.tolist()):
        block = pairs[4 * b:4 * b + 4]
        real = flat[block[block < 8]]
        assert (real == expert).all() if expert >= 0 else ((real < 0) | (real >= 4)).all()
    assert sorted(pairs[pairs < 8].tolist()) == list(range(8))  # every pair exactly once
    assert [e for e in block_experts.tolist() if e >= 0] == [0, 1, 3]


def fp8_moe_error_bound(x, weights, ids, gate_up, down):
    """FP8 error bound. The e4m3 weights are exactly the dequantised ones, so only the two
    activation quantisations (x before gate_up, silu(gate) * up before down; 1x128 groups) differ
    from the reference on the dequantised weights in fp32. Each moves a value by at most 2^-4 of
    itself (3 mantissa bits, round to nearest; the subnormal floor is far below). Carried
    through both products and the SwiGLU (|silu'| <= 1.1), per token and expert."""
    u = 2.0**-4
    bound = torch.zeros_like(x)
    inter = down.shape[-1]
    for t in range(x.shape[0]):
        for k in range(ids.shape[1]):
            e = ids[t, k]
            gate, up = (gate_up[e] @ x[t]).split(inter)
            d_gate, d_up = (u * gate_up[e].abs() @ x[t].abs()).split(inter)
            d_act = 1.1 * d_gate * (up.abs() + d_up) + F.silu(gate).abs() * d_up
            act = F.silu(gate) * up
            d_act = d_act + u * (act.abs() + d_act)  # the second quantisation
            bound[t] += weights[t, k] * (down[e].abs() @ d_act)
    return bound * 1.0001 + 1e-6


def quantize_stacked(weights, split=None):
    """Each expert's e4m3 weight and scales; gate and up rows quantised as the two checkpoint
    tensors they are (each with its own blocks)."""
    parts = [[fp8.quantize(w)] if split is None else
             [fp8.quantize(w[:split]), fp8.quantize(w[split:])] for w in weights]
    return (torch.stack([torch.cat([q for q, _ in p]) for p in parts]),
            torch.stack([torch.cat([s for _, s in p]) for p in parts]))


@pytest.mark.parametrize("case", [(1, 32, 6, 160, 136), (13, 4, 2, 96, 130), (6, 8, 8, 130, 64)],
                         ids=lambda c: "T{}-E{}-k{}-dim{}-inter{}".format(*c))
def test_fp8_experts_within_the_stated_bound(case):
    tokens, experts, top_k, dim, inter = case
    gate_up, down = random_experts(experts, dim, inter, seed=8)
    gate_up_q, gate_up_s = quantize_stacked(gate_up, inter)
    down_q, down_s = quantize_stacked(down)
    gate_up_deq = fp8.dequantize(gate_up_q, gate_up_s, split=inter)
    down_deq = fp8.dequantize(down_q, down_s)
    weights, ids = random_routing(tokens, experts, top_k, seed=9)
    x = torch.randn(tokens, dim, generator=torch.Generator().manual_seed(10))

    out = fused_experts(x, weights, ids, gate_up_q, down_q, gate_up_s, down_s)
    expected = experts_reference(x, weights, ids, gate_up_deq, down_deq)
    bound = fp8_moe_error_bound(x, weights, ids, gate_up_deq, down_deq)
    assert ((out - expected).abs() <= bound).all()
    assert (out - expected).abs().max() > 0  # the activations really were quantised


def test_a_shared_expert_folded_in_as_expert_e_with_weight_one():
    tokens, experts, top_k, dim, inter = 23, 6, 2, 40, 24
    gate_up, down = random_experts(experts + 1, dim, inter, seed=11)  # the last one is shared
    weights, ids = random_routing(tokens, experts, top_k, seed=12)
    x = torch.randn(tokens, dim, generator=torch.Generator().manual_seed(13))
    shared = (gate_up[experts], down[experts], None, None)
    shared_gate, shared_up = (gate_up[experts] @ x.T).split(inter)
    shared_out = (down[experts] @ (F.silu(shared_gate) * shared_up)).T
    routed = gate_up[:experts], down[:experts]
    close(fused_experts(x, weights, ids, *routed, shared=shared),
          experts_reference(x, weights, ids, *routed) + shared_out)
    # an id from elsewhere that happens to equal E reaches no expert, not the shared one
    foreign, zeroed = ids.clone(), weights.clone()
    foreign[0, 0] = experts
    zeroed[0, 0] = 0
    close(fused_experts(x, weights, foreign, *routed, shared=shared),
          experts_reference(x, zeroed, ids, *routed) + shared_out)
    with pytest.raises(ValueError, match="routed experts' shapes"):
        fused_experts(x, weights, ids, *routed, shared=(gate_up[0, :8], down[0], None, None))
