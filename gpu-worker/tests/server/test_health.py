"""/health turns to 503 with status "error" once an engine step has failed, so the gateway stops routing."""
import pytest
from starlette.testclient import TestClient

from gpu_worker.engine.config import EngineConfig
from gpu_worker.model.deepseek_v3 import DeepseekV3ForCausalLM
from gpu_worker.server.app import build_app
from gpu_worker.server.worker import build_state

AUTH = {"Authorization": "Bearer s"}
CHAT = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "temperature": 0}


@pytest.fixture
def client(embedded_checkpoint_dir):
    state = build_state(embedded_checkpoint_dir, EngineConfig(num_cache_blocks=16, max_model_len=512),
                        ["deepseek-chat"], secret="s")
    with TestClient(build_app(state)) as c:
        yield c
    state.engine.shutdown()


def test_health_reports_a_failed_engine(client, monkeypatch):
    healthy = client.get("/health")
    assert healthy.status_code == 200 and healthy.json()["status"] == "ok"
    assert "error" not in healthy.json()
    assert client.post("/v1/chat/completions", json=CHAT, headers=AUTH).status_code == 200

    def broken_forward(self, *args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(DeepseekV3ForCausalLM, "forward", broken_forward)
    failed = client.post("/v1/chat/completions", json=CHAT, headers=AUTH)
    assert failed.status_code >= 500
    health = client.get("/health")
    assert health.status_code == 503
    body = health.json()
    assert body["status"] == "error"
    assert "illegal memory access" in body["error"]
    assert body["models"] == ["deepseek-chat"]  # the rest of the shape stays, for dashboards

    monkeypatch.undo()  # a later step succeeding does not make the device trustworthy again
    assert client.get("/health").status_code == 503
