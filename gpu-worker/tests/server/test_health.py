"""/health and /metrics; /health turns to 503 with status "error" once an engine step has failed, so
the gateway stops routing."""
from gpu_worker.model.deepseek_v3 import DeepseekV3ForCausalLM

from .test_http import CHAT, chat, connect, worker


def test_health_reports_a_failed_engine(embedded_checkpoint_dir, monkeypatch):
    with worker(embedded_checkpoint_dir, blocks=16) as (url, _), connect(url) as client:
        healthy = client.get("/health")
        assert healthy.status_code == 200 and healthy.json()["status"] == "ok"
        assert healthy.json()["total_cache_blocks"] == 16 and "error" not in healthy.json()
        assert {"running", "waiting", "free_cache_blocks", "cache"} <= set(healthy.json())
        assert client.post(CHAT, json=chat(max_tokens=4)).status_code == 200
        metrics = client.get("/metrics").text
        assert 'gpu_worker_requests_total{endpoint="chat",model="deepseek-chat",' in metrics
        assert "gpu_worker_free_cache_blocks 16" in metrics

        def broken_forward(self, *args, **kwargs):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

        monkeypatch.setattr(DeepseekV3ForCausalLM, "forward", broken_forward)
        assert client.post(CHAT, json=chat(max_tokens=4)).status_code >= 500
        health = client.get("/health")
        assert health.status_code == 503
        body = health.json()
        assert body["status"] == "error" and "illegal memory access" in body["error"]
        assert body["models"] == ["deepseek-chat", "deepseek-reasoner"]  # the shape stays
        monkeypatch.undo()  # a later step succeeding does not make the device trustworthy again
        assert client.get("/health").status_code == 503
