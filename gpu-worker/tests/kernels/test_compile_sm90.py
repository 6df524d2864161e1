"""The MLA, MoE and FP8 kernels build for sm_90 (H100/H200), checked without a GPU (see compile_sm90.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER_ROOT = Path(__file__).resolve().parents[2]


def test_kernels_compile_for_sm90(tmp_path):
    pytest.importorskip("triton.backends.nvidia")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path), PYTHONPATH=str(WORKER_ROOT), TRITON_DEFAULT_FP_FUSION="1")
    result = subprocess.run([sys.executable, str(Path(__file__).with_name("compile_sm90.py"))], cwd=WORKER_ROOT,
                            env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert result.stdout.count("OK ") == 11, result.stdout
