"""The embedded default model: written deterministically, loadable, served with the real tokenizer."""

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import DeepseekV3ForCausalLM as HFDeepseekV3

from gpu_worker.model.attention_metadata import AttentionMetadata
from gpu_worker.model.config import ModelConfig
from gpu_worker.model.loader import load_model
from gpu_worker.model.make_checkpoint import DEFAULT_TOKENIZER_DIR

from tiny import rel_err

GPU_WORKER = Path(__file__).resolve().parents[2]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_embedded_checkpoint_is_small_deepseek_v3_with_real_vocab(embedded_checkpoint_dir):
    config = ModelConfig.from_dir(embedded_checkpoint_dir)
    assert config.vocab_size == 129280
    assert config.q_lora_rank is not None and config.first_k_dense_replace == 1
    assert config.n_group > 1 and config.num_hidden_layers > config.first_k_dense_replace
    size = (embedded_checkpoint_dir / "model.safetensors").stat().st_size
    assert 10e6 < size < 80e6


def test_command_is_deterministic_for_a_seed(embedded_checkpoint_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "gpu_worker.model.make_checkpoint", "--out", str(tmp_path / "again"),
         "--tokenizer-dir", str(embedded_checkpoint_dir)],  # the fixture's copy of the tokenizer files
        cwd=GPU_WORKER, capture_output=True, text=True,
    )
    if not (embedded_checkpoint_dir / "tokenizer.json").exists():
        assert result.returncode == 1 and "tokenizer" in result.stderr
        pytest.skip("node_modules not installed: no tokenizer files")
    assert result.returncode == 0, result.stderr
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"):
        assert digest(tmp_path / "again" / name) == digest(embedded_checkpoint_dir / name)


def test_real_tokenizer_drives_the_model(embedded_checkpoint_dir):
    if not (embedded_checkpoint_dir / "tokenizer.json").exists():
        pytest.skip(f"tokenizer files not found in {DEFAULT_TOKENIZER_DIR}")
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(embedded_checkpoint_dir / "tokenizer.json"))
    ids = tokenizer.encode("DeepSeek-V3 is a Mixture-of-Experts model.").ids
    assert max(ids) < 129280
    model = load_model(embedded_checkpoint_dir, dtype=torch.bfloat16)
    cache = model.allocate_kv_cache(num_blocks=2)
    meta = AttentionMetadata.build([([1], 0, len(ids))], block_size=64)
    logits = model.compute_logits(model(torch.tensor(ids), torch.arange(len(ids)), meta, cache))
    assert logits.shape == (len(ids), 129280) and torch.isfinite(logits).all()
    assert tokenizer.decode([int(logits[-1].argmax())]) is not None


def test_embedded_model_matches_transformers(embedded_checkpoint_dir):
    ours = load_model(embedded_checkpoint_dir, dtype=torch.float32)
    reference = HFDeepseekV3.from_pretrained(embedded_checkpoint_dir, dtype=torch.float32).eval()
    ids = torch.randint(0, 129280, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(ids).logits
    assert rel_err(ours.forward_dense(ids), expected) <= 1e-4
