"""bench/gpu_check.py --tiny runs every section's code path on CPU (Triton interpreter, toy sizes),
so the script is known to work before a GPU session spends its minutes on it."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_tiny_runs_every_section(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path))
    out = subprocess.run([sys.executable, "bench/gpu_check.py", "--tiny"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["device"].startswith("CPU") and not report["failed"] and not report["skipped"]
    assert report["model_vs_torch"]["argmax_agreement"] == 1.0
    assert report["fp8_layers_vs_torch"]["modules"] >= 5
    assert report["graphs"]["host_sync_in_decode_step"] is None
    decode = report["decode"]
    assert [(r["batch"], r["ctx"]) for r in decode] == [(1, 40), (3, 40), (1, 70), (3, 70)]
    assert all(r["step ms"] > 0 and r["roofline ms"] > 0 for r in decode)
    assert report["mixed"]["ratio"] > 0
    assert report["transformers"]["transformers_ms"] > 0 and report["transformers"]["ours_ms"] > 0
    assert [r["batch"] for r in report["v3_slice"]] == [1, 2]
    assert all(r["EP8 step ms"] > r["ms/layer"] > 0 for r in report["v3_slice"])
    assert "| batch | ctx | step ms |" in out.stdout and "| tok/s per GPU |" in out.stdout
