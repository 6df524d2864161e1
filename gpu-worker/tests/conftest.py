"""Fixtures shared by every test package of the GPU worker."""

from __future__ import annotations

import os

import pytest
import torch

# Without a GPU the Triton kernels run in Triton's interpreter. Decided here, before any test module
# imports a kernel: @triton.jit reads the setting when the kernel is defined.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# Tiny matrices: a second intra-op thread mostly waits at barriers, and on a busy 2-core machine
# it makes steps many times slower.
torch.set_num_threads(1)

from gpu_worker.model.make_checkpoint import DEFAULT_TOKENIZER_DIR, make_checkpoint


@pytest.fixture(scope="session")
def embedded_checkpoint_dir(tmp_path_factory):
    """The embedded default model (bf16, real vocab), with DeepSeek-V3's tokenizer files when
    node_modules is installed. Built once per test session into a temporary directory."""
    out = tmp_path_factory.mktemp("embedded_checkpoint")
    return make_checkpoint(out, seed=0, tokenizer_dir=DEFAULT_TOKENIZER_DIR, require_tokenizer=False)
