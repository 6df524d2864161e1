"""`python -m gpu_worker.server --tensor-parallel-size 2` on CPU (gloo ranks), over HTTP: the same greedy
tokens as one process, with tensor parallelism alone (bf16 checkpoint) and with expert parallelism (the
same weights in DeepSeek's FP8 layout); /health and /metrics cover both ranks; a dead rank means 503."""
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import torch

from gpu_worker.model.config import ModelConfig
from gpu_worker.model.make_checkpoint import (EMBEDDED_CONFIG, TOKENIZER_FILES,
                                              random_weights, write_checkpoint)
from gpu_worker.parallel.process_group import free_port
from gpu_worker.server.config import parse_args
from tests.server.test_http import AUTH, worker

WORKER_ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["Hello there, how are you?", "Write a haiku about gloo.", "1, 2, 3, 4,"]
FLAGS = ["--threads", "1", "--num-cache-blocks", "48", "--max-model-len", "512", "--max-batch-tokens", "256"]


@pytest.fixture(scope="module")
def checkpoints(embedded_checkpoint_dir, tmp_path_factory):
    if not (Path(embedded_checkpoint_dir) / "tokenizer.json").exists():
        pytest.skip("DeepSeek-V3 tokenizer files not installed (npm ci)")
    fp8 = tmp_path_factory.mktemp("embedded_fp8")
    weights = random_weights(ModelConfig.from_hf_dict(EMBEDDED_CONFIG), seed=0)
    write_checkpoint(fp8, EMBEDDED_CONFIG, weights, dtype=torch.bfloat16, quantize_fp8=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(Path(embedded_checkpoint_dir) / name, fp8 / name)
    return {"bf16": Path(embedded_checkpoint_dir), "fp8": fp8}


def start_parallel(checkpoint: Path, disk: Path, *extra: str):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gpu_worker.server", "--checkpoint", str(checkpoint), "--port", str(port),
         "--tensor-parallel-size", "2", "--parent-pid", str(os.getpid()), "--log-level", "warning",
         "--disk-cache-dir", str(disk), *FLAGS, *extra],
        cwd=WORKER_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert process.poll() is None, f"server exited: {process.stderr.read()[-3000:]}"
        try:
            return httpx.get(url + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
    if not eventually(healthy, 180):
        process.kill()
        raise AssertionError("server did not become healthy")
    return process, url


def stop(process) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


@pytest.fixture(scope="module")
def workers(checkpoints, tmp_path_factory):
    """kind -> (single-process URL, parallel URL, parallel process). The single-process worker
    runs in this process, as tests/server/test_http.py runs it."""
    started = {}
    with ExitStack() as stack:
        for kind, extra in (("bf16", ()), ("fp8", ("--enable-expert-parallel",))):
            single, _ = stack.enter_context(worker(checkpoints[kind]))
            process, url = start_parallel(checkpoints[kind], tmp_path_factory.mktemp(f"disk_{kind}"), *extra)
            stack.callback(stop, process)
            started[kind] = (single, url, process)
        yield started


def greedy(url: str, prompt: str) -> tuple[str, dict]:
    """(the answer, its usage) of 12 greedy tokens."""
    body = {"model": "deepseek-chat", "messages": [{"role": "user", "content": prompt}], "temperature": 0,
            "max_tokens": 12}
    r = httpx.post(url + "/v1/chat/completions", json=body, headers=AUTH, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"], r.json()["usage"]


def eventually(check, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        time.sleep(0.2)
    return check()


@pytest.mark.parametrize("kind", ["bf16", "fp8"])
def test_greedy_tokens_equal_the_single_process_worker(workers, kind):
    single, parallel, _ = workers[kind]
    for prompt in PROMPTS:
        text, usage = greedy(single, prompt)
        assert usage["completion_tokens"] == 12 and text
        assert greedy(parallel, prompt)[0] == text, (kind, prompt)


def test_health_and_metrics_cover_every_rank(workers):
    _, url, process = workers["bf16"]
    greedy(url, PROMPTS[0])
    health = httpx.get(url + "/health").json()
    assert health["status"] == "ok"
    ranks = health["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["alive"] for r in ranks)
    assert ranks[0]["pid"] == process.pid and ranks[1]["pid"] != process.pid
    # a follower reports about once a second: it replayed every step of a request
    assert eventually(lambda: httpx.get(url + "/health").json()["ranks"][1].get("steps", 0) >= 12)
    metrics = httpx.get(url + "/metrics").text
    assert 'gpu_worker_rank_up{rank="0"} 1' in metrics and 'gpu_worker_rank_up{rank="1"} 1' in metrics


def test_blocks_read_back_from_the_disk_tier_reach_every_rank(workers):
    """Rank 0 loads a prefix from disk into its cache: the other rank must get the same latents, or the
    continuation differs from one process's."""
    single, url, _ = workers["bf16"]
    prompt = " ".join(f"item{i}" for i in range(90))  # several full 64-token blocks
    greedy(url, prompt)
    for n in range(12):  # fill the 48-block cache with other prompts: the first one's blocks go to disk
        greedy(url, " ".join(f"filler{n}x{i}" for i in range(90)))
    cache = httpx.get(url + "/health").json()["cache"]
    assert cache["spilled_blocks"] > 0 and cache["disk_blocks"] > 0
    again, usage = greedy(url, prompt)
    assert usage["prompt_cache_hit_tokens"] >= 128
    assert httpx.get(url + "/health").json()["cache"]["disk_hit_blocks"] > cache["disk_hit_blocks"]
    assert again == greedy(single, prompt)[0]


def test_a_dead_rank_makes_the_worker_unhealthy(workers):
    """Last: it breaks the expert-parallel worker."""
    _, url, _ = workers["fp8"]
    follower = httpx.get(url + "/health").json()["ranks"][1]["pid"]
    os.kill(follower, signal.SIGKILL)
    assert eventually(lambda: httpx.get(url + "/health").status_code == 503)
    health = httpx.get(url + "/health")
    assert health.json()["status"] == "error" and "rank 1 exited" in health.json()["error"]
    assert health.json()["ranks"][1]["alive"] is False
    assert 'gpu_worker_rank_up{rank="1"} 0' in httpx.get(url + "/metrics").text
    r = httpx.post(url + "/v1/chat/completions", timeout=30,
                   json={"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert r.status_code == 503 and "rank 1" in r.json()["error"]["message"]


def test_a_size_that_does_not_divide_the_heads_is_refused(checkpoints):
    out = subprocess.run(
        [sys.executable, "-m", "gpu_worker.server", "--checkpoint", str(checkpoints["bf16"]), "--port",
         str(free_port()), "--tensor-parallel-size", "3", "--parent-pid", str(os.getpid()), *FLAGS],
        cwd=WORKER_ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode != 0
    assert "num_attention_heads (8) is not divisible by the tensor-parallel size 3" in out.stderr


def test_a_size_below_one_is_refused(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--checkpoint", "x", "--tensor-parallel-size", "0"])
    assert "--tensor-parallel-size must be at least 1" in capsys.readouterr().err
