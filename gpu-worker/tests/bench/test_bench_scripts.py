"""The bench scripts run end to end on CPU and report every figure (measurements, not asserted)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, **env: str) -> str:
    out = subprocess.run([sys.executable, *args], cwd=ROOT, env=dict(os.environ, **env),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def test_gpu_check_tiny_runs_every_section(tmp_path):
    stdout = run("bench/gpu_check.py", "--tiny", OUT=str(tmp_path))
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
    assert all(r["ms/layer"] > 0 and r["MoE(8B) ms"] > 0 for r in report["v3_slice"])
    assert "| batch | ctx | step ms |" in stdout and "| tok/s per GPU |" in stdout


def test_engine_loop_bench_reports_both_paths(embedded_checkpoint_dir):
    stdout = run("bench/bench_engine_loop.py", "--checkpoint", str(embedded_checkpoint_dir),
                 "--streams", "3", "--tokens", "4")
    http, alone = [json.loads(line) for line in stdout.splitlines()]
    assert [(r["path"], r["streams"]) for r in (http, alone)] == [
        ("http_streams", 3), ("engine_alone", 3)]
    assert http["sse_chunks"] >= 3 * 4 and http["steps"] >= 3
    assert 3 <= alone["steps"] <= 5  # one batch: a prefill, then decodes (9+ steps one by one)
    for r in (http, alone):
        assert r["model_ms"] > 0 and r["outside_model_ms"] is not None and r["sampler_ms"] > 0
