"""bench/bench_engine_loop.py runs end to end and reports per-step figures for both paths (the
figures themselves are not asserted: they are measurements)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_engine_loop_bench_reports_both_paths():
    out = subprocess.run([sys.executable, "bench/bench_engine_loop.py", "--streams", "3", "--tokens", "4", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    runs = json.loads(out.stdout.strip().splitlines()[-1])["runs"]
    assert [(r["path"], r["streams"]) for r in runs] == [("http streams", 3), ("engine alone", 3)]
    http, alone = runs
    assert http["sse_chunks"] >= 3 * 4 and http["steps"] >= 3 and alone["steps"] >= 3
    assert alone["median_batch"] == 3
    for r in runs:
        assert r["model_ms"] > 0 and r["outside_model_ms"] is not None and r["sampler_ms"] > 0
