"""bench/bench_engine_loop.py runs end to end and reports per-step figures for both paths (the
figures themselves are not asserted: they are measurements)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_engine_loop_bench_reports_both_paths(embedded_checkpoint_dir):
    command = ["bench/bench_engine_loop.py", "--checkpoint", str(embedded_checkpoint_dir),
               "--streams", "3", "--tokens", "4"]
    out = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    http, alone = [json.loads(line) for line in out.stdout.splitlines()]
    assert (http["path"], http["streams"], alone["path"], alone["streams"]) == (
        "http_streams", 3, "engine_alone", 3)
    assert http["sse_chunks"] >= 3 * 4 and http["steps"] >= 3
    assert 3 <= alone["steps"] <= 5  # one batch: a prefill, then decodes (9+ steps one by one)
    for r in (http, alone):
        assert r["model_ms"] > 0 and r["outside_model_ms"] is not None and r["sampler_ms"] > 0
