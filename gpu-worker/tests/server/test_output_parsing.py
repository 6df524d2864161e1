"""Detokenizing, stop strings, reasoning split and tool-call parsing over chosen token ids."""
import json

import pytest
from tokenizers import Tokenizer

from gpu_worker.model.make_checkpoint import DEFAULT_TOKENIZER_DIR
from gpu_worker.prompt.chat_format import (TOOL_CALL_BEGIN, TOOL_CALL_END, TOOL_CALLS_BEGIN,
                                           TOOL_CALLS_END, TOOL_SEP)
from gpu_worker.server.output import OutputDelta, OutputProcessor
from gpu_worker.server.parsers import ReasoningParser, StopStringMatcher, ToolCallParser

EOS = 1


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.from_file(str(DEFAULT_TOKENIZER_DIR / "tokenizer.json"))


def ids(tok, text):
    return tok.encode(text, add_special_tokens=False).ids


def run(proc, token_ids, one_by_one=True):
    deltas = [proc.push([t]) for t in token_ids] if one_by_one else [proc.push(token_ids)]
    return deltas + [proc.finish(OutputDelta())]


def joined(deltas, field="content"):
    return "".join(getattr(d, field) for d in deltas)


def tool_calls(calls) -> str:
    """What DeepSeek-V3 says to call these (name, arguments) functions."""
    each = (f"{TOOL_CALL_BEGIN}function{TOOL_SEP}{name}\n```json\n{json.dumps(arguments)}\n```"
            + TOOL_CALL_END for name, arguments in calls)
    return TOOL_CALLS_BEGIN + "".join(each) + TOOL_CALLS_END


def test_detokenizer_round_trips_multibyte_text_and_hides_eos(tokenizer):
    text = "héllo 世界 🎉 ok"
    proc = OutputProcessor(tokenizer, hidden_token_ids={EOS})
    deltas = run(proc, ids(tokenizer, text) + [EOS])
    assert joined(deltas) == text and all("\ufffd" not in d.content for d in deltas)
    assert proc.completion_tokens == len(ids(tokenizer, text)) + 1  # the end of sequence counts


def test_stop_string_split_across_tokens_never_reaches_output(tokenizer):
    toks = ids(tokenizer, "The answer is 42. END OF STORY and more")
    proc = OutputProcessor(tokenizer, stop=["END OF STORY"])
    assert joined(run(proc, toks)) == "The answer is 42. "
    assert proc.stop.stopped and proc.stop.matched == "END OF STORY"
    assert proc.completion_tokens < len(toks)  # tokens after the stop are not counted


@pytest.mark.parametrize("stops, pieces, emitted, flushed, matched", [
    # what could start a stop string is held back until it is known not to be one
    (["</end>"], ["abc</e", "x", "</en", "d>tail"], ["abc", "</ex", "", ""], "", "</end>"),
    (["STOP"], ["aST"], ["a"], "ST", None),
    (["END", "STOP"], ["abc STOP xyz END"], ["abc "], "", "STOP"),  # the earliest match wins
])
def test_stop_matcher(stops, pieces, emitted, flushed, matched):
    m = StopStringMatcher(stops)
    assert [m.push(p) for p in pieces] == emitted
    assert (m.stopped, m.matched) == (matched is not None, matched)
    assert m.flush() == flushed


def test_reasoning_split_and_token_count(tokenizer):
    think = ids(tokenizer, "<think>\nLet me think.\n</think>\n\n")
    proc = OutputProcessor(tokenizer, reasoning=True)
    deltas = run(proc, think + ids(tokenizer, "The answer."))
    assert joined(deltas, "reasoning") == "Let me think."
    assert joined(deltas) == "The answer."
    assert proc.reasoning_tokens == len(ids(tokenizer, "<think>\nLet me think.\n</think>"))
    # Same result when the template already opened the thinking block.
    p = ReasoningParser()
    out = [p.push(x) for x in ["Hmm", ".\n</th", "ink>\n\nYes"]] + [p.flush()]
    assert "".join(r for r, _ in out) == "Hmm." and "".join(c for _, c in out) == "Yes"


def test_tool_calls_parsed_from_tokens_and_streamed_with_index(tokenizer):
    weather, time = ("get_weather", {"city": "Paris"}), ("get_time", {"tz": "UTC+1"})
    said = "Let me check." + tool_calls([weather, time])
    toks = ids(tokenizer, said) + [EOS]
    proc = OutputProcessor(tokenizer, tools=True, hidden_token_ids={EOS})
    deltas = run(proc, toks)
    assert joined(deltas) == "Let me check."
    calls = proc.tools.calls
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Paris"}, {"tz": "UTC+1"}]
    # Streamed delta.tool_calls entries, concatenated per index as OpenAI clients do, are the calls.
    merged = {}
    for d in (c for delta in deltas for c in delta.tool_calls):
        call = merged.setdefault(d["index"], {"id": d.get("id"), "type": "function",
                                              "function": {"name": "", "arguments": ""}})
        for key, value in d["function"].items():
            call["function"][key] += value
    assert [merged[i] for i in sorted(merged)] == calls and all(c["id"] for c in calls)


def test_tool_call_parser_on_text_in_odd_pieces():
    text = tool_calls([("f", {"a": [1, 2]})])
    p, delta = ToolCallParser(), OutputDelta()
    for i in range(0, len(text), 3):
        p.push(text[i:i + 3], delta)
    assert delta.content == "" and p.flush() == ""
    assert p.calls[0]["function"]["name"] == "f" and json.loads(p.calls[0]["function"]["arguments"]) == {"a": [1, 2]}


def test_reasoning_then_tool_calls_then_nothing_lost(tokenizer):
    proc = OutputProcessor(tokenizer, reasoning=True, tools=True)
    deltas = run(proc, ids(tokenizer, "plan</think>ok" + tool_calls([("f", {})])), one_by_one=False)
    assert joined(deltas, "reasoning") == "plan" and joined(deltas) == "ok"
    assert proc.tools.calls[0]["function"]["name"] == "f"


def test_tool_call_arguments_stream_as_they_are_generated(tokenizer):
    args = {"query": "a fairly long search string", "limit": 10}
    proc = OutputProcessor(tokenizer, tools=True)
    deltas = run(proc, ids(tokenizer, tool_calls([("search", args)])))
    pieces = [c["function"]["arguments"] for d in deltas for c in d.tool_calls if c["function"].get("arguments")]
    assert len(pieces) > 3  # not one piece at the end
    assert json.loads("".join(pieces)) == args == json.loads(proc.tools.calls[0]["function"]["arguments"])
    assert not any("`" in p for p in pieces)
