"""SIGTERM drains: the running request finishes, then the worker spills its cache and exits."""
import os
import signal
import subprocess
import sys
import threading
import time

import httpx

from gpu_worker.parallel.process_group import free_port


def test_sigterm_finishes_running_requests_then_exits(embedded_checkpoint_dir, tmp_path):
    port = free_port()
    disk = tmp_path / "disk"
    env = dict(os.environ, GPU_WORKER_SECRET="s", PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    proc = subprocess.Popen([sys.executable, "-m", "gpu_worker.server", "--checkpoint", str(embedded_checkpoint_dir),
                             "--port", str(port), "--num-cache-blocks", "32", "--disk-cache-dir", str(disk),
                             "--threads", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            if "listening on" in line:
                break
        result = {}

        def long_request():
            r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", headers={"Authorization": "Bearer s"},
                           json={"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}],
                                 "max_tokens": 200, "temperature": 0}, timeout=60)
            result["status"], result["body"] = r.status_code, r.json()

        t = threading.Thread(target=long_request)
        t.start()
        for _ in range(100):
            if httpx.get(f"http://127.0.0.1:{port}/health").json()["running"] == 1:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        t.join(60)
        proc.wait(60)
        assert result["status"] == 200
        assert result["body"]["usage"]["completion_tokens"] == 200
        assert result["body"]["choices"][0]["finish_reason"] == "length"
        assert len(list(disk.iterdir())) == 3  # 4 + 200 tokens: three full blocks spilled for the next worker
    finally:
        if proc.poll() is None:
            proc.kill()
