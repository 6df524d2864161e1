"""SIGTERM drains: the running request finishes, then the worker spills its cache and exits."""
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gpu_worker.parallel.process_group import free_port

from .test_http import SECRET, chat, connect, post


def test_sigterm_finishes_running_requests_then_exits(embedded_checkpoint_dir, tmp_path):
    port, disk = free_port(), tmp_path / "disk"
    env = dict(os.environ, GPU_WORKER_SECRET=SECRET, PYTHONPATH=str(Path(__file__).parents[2]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpu_worker.server", "--checkpoint", str(embedded_checkpoint_dir),
         "--port", str(port), "--num-cache-blocks", "32", "--disk-cache-dir", str(disk),
         "--threads", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        next(line for line in proc.stdout if "listening on" in line)
        with connect(f"http://127.0.0.1:{port}") as client, ThreadPoolExecutor(1) as pool:
            reply = pool.submit(post, client, chat("hi", max_tokens=200))
            for _ in range(100):
                if client.get("/health").json()["running"] == 1:
                    break
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            body = reply.result(60)
        proc.wait(60)
        assert body["usage"]["completion_tokens"] == 200
        assert body["choices"][0]["finish_reason"] == "length"
        assert len(list(disk.iterdir())) == 3  # 4 + 200 tokens: three full blocks spilled for the next worker
    finally:
        if proc.poll() is None:
            proc.kill()
