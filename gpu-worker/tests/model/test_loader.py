"""Checkpoint loading: formats, dtypes, sharding, FP8 blocks, and errors that name the tensor."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from gpu_worker.model import fp8
from gpu_worker.model.checkpoint_writer import random_weights, write_checkpoint
from gpu_worker.model.config import ModelConfig
from gpu_worker.model.loader import CheckpointError, load_model

from tiny import hf_config, rel_err

IDS = torch.randint(0, 101, (2, 12), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def weights():
    return random_weights(ModelConfig.from_hf_dict(hf_config()), seed=11)


@pytest.fixture(scope="module")
def reference_logits(weights, tmp_path_factory):
    path = write_checkpoint(tmp_path_factory.mktemp("fp32"), hf_config(), weights, dtype=torch.float32)
    return load_model(path).forward_dense(IDS)


def test_sharded_checkpoint_with_index_equals_single_file(weights, reference_logits, tmp_path):
    write_checkpoint(tmp_path, hf_config(), weights, dtype=torch.float32, max_shard_bytes=20_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 3
    assert torch.equal(load_model(tmp_path).forward_dense(IDS), reference_logits)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_checkpoints_load_into_float32(weights, reference_logits, tmp_path, dtype):
    write_checkpoint(tmp_path, hf_config(), weights, dtype=dtype)
    model = load_model(tmp_path, dtype=torch.float32)
    stored = load_file(tmp_path / "model.safetensors")["model.layers.1.mlp.experts.3.up_proj.weight"]
    assert stored.dtype == dtype
    assert torch.equal(model.layers[1].mlp.experts.gate_up_proj[3, 16:], stored.float())
    assert rel_err(model.forward_dense(IDS), reference_logits) < 0.1  # rounding of the weights only


def test_loads_in_bfloat16(weights, reference_logits, tmp_path):
    write_checkpoint(tmp_path, hf_config(), weights, dtype=torch.bfloat16)
    model = load_model(tmp_path, dtype=torch.bfloat16)
    assert model.embed_tokens.dtype == torch.bfloat16
    assert model.layers[1].mlp.gate.e_score_correction_bias.dtype == torch.float32
    logits = model.forward_dense(IDS)
    assert logits.dtype == torch.float32
    assert rel_err(logits, reference_logits) < 0.1


def test_fp8_checkpoint_dequantizes_to_the_weights_it_came_from(weights, tmp_path):
    write_checkpoint(tmp_path / "fp8", hf_config(), weights, dtype=torch.bfloat16, quantize_fp8=True)
    stored = load_file(tmp_path / "fp8" / "model.safetensors")
    name = "model.layers.0.self_attn.q_b_proj.weight"
    assert stored[name].dtype == torch.float8_e4m3fn
    assert stored[name + "_scale_inv"].dtype == torch.float32
    model = load_model(tmp_path / "fp8")

    # exactly the block-wise dequantization of what was stored ...
    expected = fp8.dequantize(stored[name], stored[name + "_scale_inv"])
    assert torch.equal(model.layers[0].self_attn.q_b_proj.weight, expected)
    # ... which is the original weight up to e4m3 rounding (3 mantissa bits)
    original = weights[name]
    assert ((expected - original).abs() <= original.abs() / 16 + 1e-3).all()
    # and the whole model equals one loaded from the dequantized weights in float32
    dequantized = {n: (fp8.dequantize(stored[n], stored[n + "_scale_inv"]) if stored[n].dtype == fp8.FP8_DTYPE
                       else stored[n].float()) for n in weights}
    write_checkpoint(tmp_path / "deq", hf_config(), dequantized, dtype=torch.float32)
    assert torch.equal(model.forward_dense(IDS), load_model(tmp_path / "deq").forward_dense(IDS))


def test_fp8_blocks_with_ragged_edges():
    torch.manual_seed(0)
    w = torch.randn(300, 200) * torch.logspace(-3, 1, 300)[:, None]  # very different scale per block row
    q, scale = fp8.quantize(w)
    assert scale.shape == (3, 2)
    deq = fp8.dequantize(q, scale)
    assert ((deq - w).abs() <= w.abs() / 16 + scale.max() * 1e-2).all()
    # each block is scaled by its own factor
    assert torch.equal(deq[:128, :128], q[:128, :128].float() * scale[0, 0])
    assert torch.equal(deq[256:, 128:], q[256:, 128:].float() * scale[2, 1])


def _edit_checkpoint(path, edit):
    file = path / "model.safetensors"
    tensors = load_file(file)
    edit(tensors)
    save_file(tensors, file)


def test_missing_unexpected_and_misshaped_tensors_are_named(weights, tmp_path):
    write_checkpoint(tmp_path, hf_config(), weights, dtype=torch.float32)

    def break_it(t):
        del t["model.layers.2.mlp.experts.5.down_proj.weight"]
        t["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.zeros(2)
        t["model.layers.1.self_attn.kv_b_proj.weight"] = torch.zeros(7, 16)

    _edit_checkpoint(tmp_path, break_it)
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path)
    error = info.value
    assert error.missing == ["model.layers.2.mlp.experts.5.down_proj.weight"]
    assert error.unexpected == ["model.layers.0.self_attn.rotary_emb.inv_freq"]
    assert error.misshaped == ["model.layers.1.self_attn.kv_b_proj.weight (expected [64, 16], got [7, 16])"]
    for name in ("experts.5.down_proj", "rotary_emb.inv_freq", "layers.1.self_attn.kv_b_proj"):
        assert name in str(error)


def test_mtp_layers_beyond_num_hidden_layers_are_skipped(weights, reference_logits, tmp_path):
    config = hf_config(num_nextn_predict_layers=1)
    mtp = {name.replace("model.layers.2.", "model.layers.3."): t.clone() for name, t in weights.items()
           if name.startswith("model.layers.2.")}
    mtp["model.layers.3.eh_proj.weight"] = torch.zeros(32, 64)
    mtp["model.layers.3.enorm.weight"] = torch.ones(32)
    write_checkpoint(tmp_path, config, {**weights, **mtp}, dtype=torch.float32)
    assert torch.equal(load_model(tmp_path).forward_dense(IDS), reference_logits)


def test_fp8_weight_without_scale_is_refused(weights, tmp_path):
    write_checkpoint(tmp_path, hf_config(), weights, quantize_fp8=True)
    _edit_checkpoint(tmp_path, lambda t: t.pop("model.layers.0.self_attn.o_proj.weight_scale_inv"))
    with pytest.raises(CheckpointError, match="model.layers.0.self_attn.o_proj.weight_scale_inv"):
        load_model(tmp_path)
