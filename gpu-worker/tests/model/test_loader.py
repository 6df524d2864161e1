"""Checkpoint loading: formats, dtypes, sharding, FP8 blocks, and errors that name the tensor."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from gpu_worker.model import fp8
from gpu_worker.model.make_checkpoint import random_weights, write_checkpoint
from gpu_worker.model.config import ModelConfig
from gpu_worker.model.deepseek_v3 import DeepseekV3ForCausalLM
from gpu_worker.model.loader import CheckpointError, load_model, load_weights
from gpu_worker.parallel.state import Parallel, using

from tiny import hf_config, rel_err

IDS = torch.randint(0, 101, (2, 12), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def weights():
    return random_weights(ModelConfig.from_hf_dict(hf_config()), seed=11)


@pytest.fixture(scope="module")
def reference_logits(weights, tmp_path_factory):
    path = write_checkpoint(tmp_path_factory.mktemp("fp32"), hf_config(), weights, dtype=torch.float32)
    return load_model(path).forward_dense(IDS)


@pytest.fixture(scope="module")
def fp8_checkpoint(weights, tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("fp8"), hf_config(), weights,
                            dtype=torch.bfloat16, quantize_fp8=True)


@pytest.fixture(scope="module")
def widened(fp8_checkpoint):
    """The FP8 checkpoint dequantised at load (the torch backend's default)."""
    return load_model(fp8_checkpoint)


def holds(stored, tensor, scale, name, rows=slice(None), cols=slice(None)):
    """tensor: the e4m3 bytes of stored[name][rows, cols]; scale: the block scales over them."""
    part = stored[name][rows, cols].view(torch.uint8)
    scales = stored[name + "_scale_inv"][fp8.block_source((rows, cols))]
    return (tensor.dtype == fp8.FP8_DTYPE and torch.equal(tensor.view(torch.uint8), part)
            and torch.equal(scale, scales))


def test_sharded_checkpoint_with_index_equals_single_file(weights, reference_logits, tmp_path):
    write_checkpoint(tmp_path, hf_config(), weights, dtype=torch.float32, max_shard_bytes=20_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 3
    assert torch.equal(load_model(tmp_path).forward_dense(IDS), reference_logits)


@pytest.mark.parametrize("stored, dtype", [(torch.bfloat16, torch.float32),
                                           (torch.float16, torch.float32),
                                           (torch.bfloat16, torch.bfloat16)])
def test_half_precision_checkpoints(weights, reference_logits, tmp_path, stored, dtype):
    write_checkpoint(tmp_path, hf_config(), weights, dtype=stored)
    model = load_model(tmp_path, dtype=dtype)
    up = load_file(tmp_path / "model.safetensors")["model.layers.1.mlp.experts.3.up_proj.weight"]
    assert up.dtype == stored
    assert torch.equal(model.layers[1].mlp.experts.gate_up_proj[3, 16:], up.to(dtype))
    assert model.layers[1].mlp.gate.e_score_correction_bias.dtype == torch.float32
    logits = model.forward_dense(IDS)
    assert logits.dtype == torch.float32
    assert rel_err(logits, reference_logits) < 0.1  # rounding of the weights (and activations) only


def test_fp8_checkpoint_dequantizes_to_the_weights_it_came_from(weights, fp8_checkpoint, widened,
                                                                tmp_path):
    stored = load_file(fp8_checkpoint / "model.safetensors")
    name = "model.layers.0.self_attn.q_b_proj.weight"
    assert stored[name + "_scale_inv"].dtype == torch.float32
    # exactly the block-wise dequantization of what was stored ...
    expected = fp8.dequantize(stored[name], stored[name + "_scale_inv"])
    assert torch.equal(widened.layers[0].self_attn.q_b_proj.weight, expected)
    # ... which is the original weight up to e4m3 rounding (3 mantissa bits)
    assert ((expected - weights[name]).abs() <= weights[name].abs() / 16 + 1e-3).all()
    # and the whole model equals one loaded from the dequantized weights in float32
    dequantized = {n: fp8.dequantize(stored[n], stored[n + "_scale_inv"])
                   if stored[n].dtype == fp8.FP8_DTYPE else stored[n].float() for n in weights}
    write_checkpoint(tmp_path, hf_config(), dequantized, dtype=torch.float32)
    assert torch.equal(widened.forward_dense(IDS), load_model(tmp_path).forward_dense(IDS))


def test_fp8_blocks_with_ragged_edges():
    torch.manual_seed(0)
    w = torch.randn(300, 200) * torch.logspace(-3, 1, 300)[:, None]  # a scale per block row
    q, scale = fp8.quantize(w)
    assert scale.shape == (3, 2)
    deq = fp8.dequantize(q, scale)
    assert ((deq - w).abs() <= w.abs() / 16 + scale.max() * 1e-2).all()
    # each block is scaled by its own factor
    assert torch.equal(deq[:128, :128], q[:128, :128].float() * scale[0, 0])
    assert torch.equal(deq[256:, 128:], q[256:, 128:].float() * scale[2, 1])


def test_missing_unexpected_and_misshaped_tensors_are_named(weights, tmp_path):
    write_checkpoint(tmp_path, hf_config(), weights, dtype=torch.float32)
    tensors = load_file(tmp_path / "model.safetensors")
    del tensors["model.layers.2.mlp.experts.5.down_proj.weight"]
    tensors["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.zeros(2)
    tensors["model.layers.1.self_attn.kv_b_proj.weight"] = torch.zeros(7, 16)
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path)
    error = info.value
    assert error.missing == ["model.layers.2.mlp.experts.5.down_proj.weight"]
    assert error.unexpected == ["model.layers.0.self_attn.rotary_emb.inv_freq"]
    assert error.misshaped == [
        "model.layers.1.self_attn.kv_b_proj.weight (expected [64, 16], got [7, 16])"]
    for name in ("experts.5.down_proj", "rotary_emb.inv_freq", "layers.1.self_attn.kv_b_proj"):
        assert name in str(error)


def test_mtp_layers_beyond_num_hidden_layers_are_skipped(weights, reference_logits, tmp_path):
    mtp = {name.replace("layers.2.", "layers.3."): t.clone() for name, t in weights.items()
           if name.startswith("model.layers.2.")}
    mtp["model.layers.3.eh_proj.weight"] = torch.zeros(32, 64)
    mtp["model.layers.3.enorm.weight"] = torch.ones(32)
    write_checkpoint(tmp_path, hf_config(num_nextn_predict_layers=1), {**weights, **mtp},
                     dtype=torch.float32)
    assert torch.equal(load_model(tmp_path).forward_dense(IDS), reference_logits)


def no_scale(stored, name="model.layers.0.self_attn.o_proj.weight"):
    del stored[name + "_scale_inv"]
    return f"FP8 tensor {name} has no {name}_scale_inv"


def one_widened(stored, name="model.layers.1.mlp.experts.2.down_proj.weight"):
    stored[name] = fp8.dequantize(stored[name], stored.pop(name + "_scale_inv")).bfloat16()
    return f"{name} is stored as BF16, not FP8 like the rest"


@pytest.mark.parametrize("edit, keep_fp8", [(no_scale, False), (one_widened, True)])
def test_fp8_weights_without_their_scales_are_refused(fp8_checkpoint, tmp_path, edit, keep_fp8):
    stored = load_file(fp8_checkpoint / "model.safetensors")
    message = edit(stored)
    save_file(stored, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text((fp8_checkpoint / "config.json").read_text())
    with pytest.raises(CheckpointError, match=message):
        load_model(tmp_path, keep_fp8=keep_fp8)
    if edit is one_widened:
        load_model(tmp_path)  # widened at load, a bf16 tensor among FP8 ones is fine


def test_fp8_kept_as_fp8_holds_the_stored_bytes_and_block_scales(fp8_checkpoint, widened):
    stored = load_file(fp8_checkpoint / "model.safetensors")
    model = load_model(fp8_checkpoint, keep_fp8=True)
    experts = model.layers[1].mlp.experts  # gate's scales, then up's
    assert holds(stored, experts.gate_up_proj[3, 16:], experts.gate_up_scale[3, 1:],
                 "model.layers.1.mlp.experts.3.up_proj.weight")
    qkv_a = model.layers[0].self_attn.qkv_a_proj  # kv_a stacked after q_a's 24 rows
    assert holds(stored, qkv_a.weight[24:], qkv_a.weight_scale_inv[1:],
                 "model.layers.0.self_attn.kv_a_proj_with_mqa.weight")
    down = model.layers[0].mlp.down_proj
    assert holds(stored, down.weight, down.weight_scale_inv, "model.layers.0.mlp.down_proj.weight")
    shared = model.layers[2].mlp.shared_experts.gate_up_proj
    assert holds(stored, shared.weight[:16], shared.weight_scale_inv[:1],
                 "model.layers.2.mlp.shared_experts.gate_proj.weight")
    assert model.embed_tokens.dtype == model.layers[1].mlp.gate.weight.dtype == torch.float32
    # the torch backend dequantises for each product: exactly the model widened at load
    assert torch.equal(model.forward_dense(IDS), widened.forward_dense(IDS))


def test_fp8_model_on_the_triton_backend_within_the_stated_bounds(fp8_checkpoint, widened):
    """W8A8 rounds only the activations to e4m3 before each product, by at most 2^-4 of themselves
    (kernels/test_fp8_gemm.py proves the per-product bound). To first order the errors of products
    in series add: two in an MLP, five on attention's longest path (q_a/kv_a, q_b, kv_b, o_proj).
    The logits after three 32-channel layers stay well inside 1/2 (measured: 0.24)."""
    fused = load_model(fp8_checkpoint, kernel_backend="triton")  # keeps FP8 by default
    assert fused.layers[1].mlp.experts.gate_up_proj.dtype == fp8.FP8_DTYPE
    assert widened.layers[1].mlp.experts.gate_up_proj.dtype == torch.float32
    u = 2.0**-4
    h = torch.nn.functional.embedding(IDS, widened.embed_tokens)
    freqs = widened.rotary.lookup(torch.arange(IDS.shape[1]))
    with torch.inference_mode():
        for exact, quantised in zip(widened.layers, fused.layers):
            x = exact.input_layernorm(h)
            attention = quantised.self_attn.forward_dense(x, freqs)
            assert rel_err(attention, exact.self_attn.forward_dense(x, freqs)) <= 5 * u
            x = exact.post_attention_layernorm(h).view(-1, h.shape[-1])
            assert 0 < rel_err(quantised.mlp(x), exact.mlp(x)) <= 2 * u
            h = exact.forward_dense(h, freqs)
    assert rel_err(fused.forward_dense(IDS), widened.forward_dense(IDS)) <= 0.5


# DeepSeek-V3's shapes scaled down: every part a rank holds is a multiple of 128 wide, as in V3
ALIGNED = dict(hidden_size=128, intermediate_size=256, moe_intermediate_size=256, num_attention_heads=2,
               num_key_value_heads=2, q_lora_rank=128, kv_lora_rank=128, qk_nope_head_dim=128,
               qk_rope_head_dim=128, v_head_dim=128, num_hidden_layers=2, n_routed_experts=4, n_group=2,
               topk_group=1, num_experts_per_tok=2)


@pytest.mark.parametrize("expert_parallel", [False, True])
def test_fp8_kept_on_a_rank_holds_its_part_of_each_tensor_and_scale(tmp_path, expert_parallel):
    config = hf_config(**ALIGNED)
    path = write_checkpoint(tmp_path, config, random_weights(ModelConfig.from_hf_dict(config), seed=3),
                            dtype=torch.bfloat16, quantize_fp8=True)
    stored = load_file(path / "model.safetensors")
    with using(Parallel(rank=1, size=2, expert_parallel=expert_parallel)):
        model = DeepseekV3ForCausalLM(ModelConfig.from_dir(path), kernel_backend="torch")
        load_weights(model, path)

    attention = model.layers[1].self_attn  # rank 1 of 2: the second head
    assert holds(stored, attention.q_b_proj.weight, attention.q_b_proj.weight_scale_inv,
                 "model.layers.1.self_attn.q_b_proj.weight", slice(256, 512))
    assert holds(stored, attention.o_proj.weight, attention.o_proj.weight_scale_inv,
                 "model.layers.1.self_attn.o_proj.weight", cols=slice(128, 256))
    dense = model.layers[0].mlp  # tensor parallel: the second half of the intermediate width
    assert holds(stored, dense.gate_up_proj.weight[128:], dense.gate_up_proj.weight_scale_inv[1:],
                 "model.layers.0.mlp.up_proj.weight", slice(128, 256))
    experts = model.layers[1].mlp.experts
    if expert_parallel:  # experts 2 and 3, whole
        assert holds(stored, experts.down_proj[1], experts.down_scale[1],
                     "model.layers.1.mlp.experts.3.down_proj.weight")
    else:  # every expert, the second half of its width
        assert holds(stored, experts.down_proj[0], experts.down_scale[0],
                     "model.layers.1.mlp.experts.0.down_proj.weight", cols=slice(128, 256))


def test_an_fp8_part_that_starts_inside_a_block_is_refused(tmp_path):
    # intermediate 48: a rank's half starts at row 24
    write_checkpoint(tmp_path, hf_config(), random_weights(ModelConfig.from_hf_dict(hf_config())),
                     quantize_fp8=True)
    with using(Parallel(rank=1, size=2)), pytest.raises(ValueError, match="multiples of 128"):
        DeepseekV3ForCausalLM(ModelConfig.from_dir(tmp_path), kernel_backend="torch").checkpoint_layout()


def test_random_weights_of_an_fp8_config_are_the_weights_only(fp8_checkpoint, weights):
    assert random_weights(ModelConfig.from_dir(fp8_checkpoint), seed=11).keys() == weights.keys()
