"""FP8 activation quantisation and the block-scaled W8A8 GEMM against torch's dequantise-then-matmul.

Error bound of the W8A8 GEMM. Weights are e4m3 already, so the kernel multiplies exactly the dequantised
weights W. Only the activations are rounded: each x is replaced by q * s with q an e4m3 number, and e4m3
keeps 3 mantissa bits, so rounding to nearest moves a normal value by at most 2^-4 of itself and a
subnormal one (|x / s| < 2^-6) by at most half the 2^-9 step, i.e. 2^-10 * s. Hence, elementwise,

    |C - x @ W^T| <= 2^-4 * (|x| @ |W|^T) + 2^-10 * (s @ |W|^T)   (+ the output's own rounding)

with fp32 accumulation adding a negligible K * 2^-24 relative. The tests assert this bound.
"""

import pytest
import torch

from gpu_worker.kernels.fp8_gemm import act_quant, w8a8_linear
from gpu_worker.model import fp8


def activation_error_bound(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Elementwise bound on |W8A8(x, W) - x @ W^T| from rounding x to e4m3 (see the module docstring)."""
    _, scale = fp8.quantize_activations(x)
    per_channel_scale = scale.repeat_interleave(128, dim=1)[:, : x.shape[1]]
    bound = 2.0**-4 * x.abs().float() @ weight.abs().T + 2.0**-10 * per_channel_scale @ weight.abs().T
    return bound * (1 + 1e-5) + 1e-6  # fp32 accumulation


def random_fp8_weight(n: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # scales that differ by orders of magnitude between 128-blocks, so a wrong block lookup shows
    w = torch.randn(n, k, generator=g) * torch.logspace(-2, 1, n)[:, None] * torch.logspace(1, -1, k)[None, :]
    return fp8.quantize(w)


@pytest.mark.parametrize("shape", [(1, 32), (3, 200), (5, 384), (2, 1)])
def test_act_quant_equals_the_torch_quantisation(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g) * torch.logspace(-3, 2, shape[1])  # groups of unlike size
    x[0, :5] = torch.tensor([0.0, 1e-9, -1e-7, 3.0, -3.0])[:shape[1]]  # subnormal and tiny values
    q, scale = act_quant(x)
    q_ref, scale_ref = fp8.quantize_activations(x)
    assert torch.equal(scale, scale_ref)
    assert torch.equal(q.float(), q_ref.float())  # the same e4m3 values (a zero's sign may differ)


def test_act_quant_rounds_up_across_a_power_of_two_and_scales_zeros_finitely():
    # x / s just under 128 must become 128, not 64 (Triton's interpreter cast alone gets it wrong)
    x = torch.tensor([[127.9, 31.9, 448.0, -0.015, 0.0009765625 * 1.5]])
    q, _ = act_quant(x)
    assert q.float().tolist()[0][:3] == [128.0, 32.0, 448.0]
    assert torch.equal(q.float(), fp8.quantize_activations(x)[0].float())
    q, scale = act_quant(torch.zeros(2, 130))  # an all-zero group
    assert (q.float() == 0).all() and torch.isfinite(scale).all() and (scale > 0).all()


@pytest.mark.parametrize("m,n,k", [(1, 32, 32), (7, 200, 300), (3, 129, 257), (33, 256, 128), (1, 1, 1), (67, 130, 140)])
def test_w8a8_gemm_within_the_stated_bound_of_the_dequantised_matmul(m, n, k):
    weight, scale = random_fp8_weight(n, k, seed=m * n + k)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(k))
    dequantised = fp8.dequantize(weight, scale)
    out = w8a8_linear(x, weight, scale)
    expected = x @ dequantised.T
    assert out.dtype == torch.float32 and out.shape == (m, n)
    assert ((out - expected).abs() <= activation_error_bound(x, dequantised)).all()
    # and it is the exact product of the quantised operands, up to fp32 summation order
    q, s = fp8.quantize_activations(x)
    x_q = q.float() * s.repeat_interleave(128, dim=1)[:, :k]
    summation = 1e-5 * (x_q.abs() @ dequantised.abs().T) + 1e-6
    assert ((out - x_q @ dequantised.T).abs() <= summation).all()


def test_bfloat16_activations_and_output():
    weight, scale = random_fp8_weight(96, 160, seed=1)
    x = torch.randn(2, 3, 160, generator=torch.Generator().manual_seed(2)).bfloat16()
    out = w8a8_linear(x, weight, scale)
    dequantised = fp8.dequantize(weight, scale)
    expected = x.float() @ dequantised.T
    assert out.dtype == torch.bfloat16 and out.shape == (2, 3, 96)
    bound = activation_error_bound(x.view(-1, 160).float(), dequantised).view(2, 3, 96)
    bound += 2.0**-7 * expected.abs()  # the bf16 output's rounding
    assert ((out.float() - expected).abs() <= bound).all()


def test_a_weight_stacked_from_two_parts_uses_each_parts_scale_blocks():
    # gate/up or q_a/kv_a: two checkpoint tensors (rows 40 and 150, not multiples of 128) in one weight
    (w1, s1), (w2, s2) = random_fp8_weight(40, 136, seed=3), random_fp8_weight(150, 136, seed=4)
    weight, scale = torch.cat((w1, w2)), torch.cat((s1, s2))
    x = torch.randn(4, 136, generator=torch.Generator().manual_seed(5))
    out = w8a8_linear(x, weight, scale, split=40)
    dequantised = fp8.dequantize(weight, scale, split=40)
    torch.testing.assert_close(dequantised, torch.cat((fp8.dequantize(w1, s1), fp8.dequantize(w2, s2))))
    assert ((out - x @ dequantised.T).abs() <= activation_error_bound(x, dequantised)).all()
