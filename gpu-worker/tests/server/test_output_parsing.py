"""Detokenizing, stop strings, reasoning split and tool-call parsing over chosen token ids."""
import json

from gpu_worker.server.output import OutputProcessor
from gpu_worker.server.parsers import (CALL_BEGIN, CALL_END, CALLS_BEGIN, CALLS_END, TOOL_SEP, ReasoningParser,
                                       ToolCallParser, merge_tool_deltas)
from gpu_worker.server.stop_strings import StopStringMatcher

EOS = 1


def ids(tok, text):
    return tok.encode(text, add_special_tokens=False).ids


def run(proc, token_ids, one_by_one=True):
    deltas = [proc.push([t]) for t in token_ids] if one_by_one else [proc.push(token_ids)]
    deltas.append(proc.finish())
    return deltas


def joined(deltas, field="content"):
    return "".join(getattr(d, field) for d in deltas)


def test_detokenizer_round_trips_multibyte_text(tokenizer):
    text = "héllo 世界 🎉 ok"
    proc = OutputProcessor(tokenizer)
    deltas = run(proc, ids(tokenizer, text))
    assert joined(deltas) == text
    assert all("\ufffd" not in d.content for d in deltas)


def test_stop_string_split_across_tokens_never_reaches_output(tokenizer):
    text = "The answer is 42. END OF STORY and more"
    toks = ids(tokenizer, text)
    proc = OutputProcessor(tokenizer, stop=["END OF STORY"])
    deltas = run(proc, toks)
    assert joined(deltas) == "The answer is 42. "
    assert proc.stopped_by_string
    # Tokens after the stop are not counted.
    assert proc.completion_tokens < len(toks)


def test_stop_matcher_holds_back_possible_prefix():
    m = StopStringMatcher(["</end>"])
    assert m.push("abc</e") == "abc"
    assert m.push("x") == "</ex"
    assert m.push("</en") == ""
    assert m.push("d>tail") == "" and m.stopped
    m2 = StopStringMatcher(["STOP"])
    assert m2.push("aST") == "a" and m2.flush() == "ST"


def test_eos_is_counted_not_shown(tokenizer):
    proc = OutputProcessor(tokenizer, hidden_token_ids={EOS})
    deltas = run(proc, ids(tokenizer, "hi there") + [EOS])
    assert joined(deltas) == "hi there" and proc.completion_tokens == len(ids(tokenizer, "hi there")) + 1


def test_reasoning_split_and_token_count(tokenizer):
    think = ids(tokenizer, "<think>\nLet me think.\n</think>\n\n")
    answer = ids(tokenizer, "The answer.")
    proc = OutputProcessor(tokenizer, reasoning=True)
    deltas = run(proc, think + answer)
    assert joined(deltas, "reasoning") == "Let me think."
    assert joined(deltas) == "The answer."
    assert proc.reasoning_tokens == len(ids(tokenizer, "<think>\nLet me think.\n</think>"))
    # Same result when the template already opened the thinking block.
    p = ReasoningParser()
    out = [p.push(x) for x in ["Hmm", ".\n</th", "ink>\n\nYes"]] + [p.flush()]
    assert "".join(r for r, _ in out) == "Hmm." and "".join(c for _, c in out) == "Yes"


def tool_call_tokens(tok, calls):
    out = [tok.token_to_id(CALLS_BEGIN)]
    for name, args in calls:
        out += [tok.token_to_id(CALL_BEGIN)] + ids(tok, "function") + [tok.token_to_id(TOOL_SEP)]
        out += ids(tok, f"{name}\n```json\n{json.dumps(args)}\n```") + [tok.token_to_id(CALL_END)]
    return out + [tok.token_to_id(CALLS_END)]


def test_tool_calls_parsed_from_tokens_and_streamed_with_index(tokenizer):
    toks = ids(tokenizer, "Let me check.") + tool_call_tokens(
        tokenizer, [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "UTC+1"})]) + [EOS]
    proc = OutputProcessor(tokenizer, tools=True, hidden_token_ids={EOS})
    deltas = run(proc, toks)
    assert joined(deltas) == "Let me check."
    calls = proc.tools.calls
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    assert [json.loads(c.arguments) for c in calls] == [{"city": "Paris"}, {"tz": "UTC+1"}]
    streamed = [c for d in deltas for c in d.tool_calls]
    assert streamed[0]["index"] == 0 and streamed[0]["function"]["name"] == "get_weather" and streamed[0]["id"]
    merged = merge_tool_deltas(streamed)
    assert [m["function"]["name"] for m in merged] == ["get_weather", "get_time"]
    assert [json.loads(m["function"]["arguments"]) for m in merged] == [{"city": "Paris"}, {"tz": "UTC+1"}]
    assert [m["id"] for m in merged] == [c.id for c in calls]


def test_tool_call_parser_on_text_in_odd_pieces():
    text = (f"{CALLS_BEGIN}{CALL_BEGIN}function{TOOL_SEP}f\n```json\n{{\"a\": [1, 2]}}\n```{CALL_END}"
            f"{CALLS_END}")
    p = ToolCallParser()
    deltas = [p.push(text[i:i + 3]) for i in range(0, len(text), 3)]
    assert "".join(d.content for d in deltas) == ""
    assert p.calls[0].name == "f" and json.loads(p.calls[0].arguments) == {"a": [1, 2]}


def test_reasoning_then_tool_calls_then_nothing_lost(tokenizer):
    proc = OutputProcessor(tokenizer, reasoning=True, tools=True)
    toks = ids(tokenizer, "plan</think>ok") + tool_call_tokens(tokenizer, [("f", {})])
    deltas = run(proc, toks, one_by_one=False)
    assert joined(deltas, "reasoning") == "plan" and joined(deltas) == "ok" and proc.tools.calls[0].name == "f"


def test_tool_call_arguments_stream_as_they_are_generated(tokenizer):
    args = {"query": "a fairly long search string", "limit": 10}
    toks = tool_call_tokens(tokenizer, [("search", args)])
    proc = OutputProcessor(tokenizer, tools=True)
    deltas = run(proc, toks)
    pieces = [c["function"]["arguments"] for d in deltas for c in d.tool_calls if c["function"].get("arguments")]
    assert len(pieces) > 3  # not one piece at the end
    assert json.loads("".join(pieces)) == args == json.loads(proc.tools.calls[0].arguments)
    assert not any("`" in p for p in pieces)


def test_stop_matcher_reports_the_earliest_matching_stop_string():
    m = StopStringMatcher(["END", "STOP"])
    assert m.push("abc STOP xyz END") == "abc "
    assert m.stopped and m.matched == "STOP"
    assert StopStringMatcher(["x"]).matched is None
