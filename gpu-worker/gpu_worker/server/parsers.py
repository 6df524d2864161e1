"""Streaming parsers over the model's output text.

ReasoningParser splits deepseek-reasoner output into the chain of thought (until `</think>`)
and the answer. ToolCallParser turns DeepSeek's tool-call tokens into OpenAI tool calls:

  <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>
  ...more calls...<｜tool▁calls▁end｜>

Both take text in arbitrary pieces and hold back only what could still be a marker.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from .stop_strings import partial_suffix_len

THINK_START, THINK_END = "<think>", "</think>"
CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
CALLS_END = "<｜tool▁calls▁end｜>"
CALL_BEGIN = "<｜tool▁call▁begin｜>"
CALL_END = "<｜tool▁call▁end｜>"
TOOL_SEP = "<｜tool▁sep｜>"

_CALL_RE = re.compile(r"^\s*(?P<type>[^\n]*?)" + re.escape(TOOL_SEP) + r"(?P<name>[^\n]*)\n(?P<rest>.*)$", re.S)
_FENCE_RE = re.compile(r"^\s*```(?:json)?\s*\n?(?P<args>.*?)\n?```\s*$", re.S)


class ReasoningParser:
    """Text before `</think>` is reasoning, after it content; the newlines the model puts
    around the marker are trimmed, as DeepSeek's API does."""

    def __init__(self):
        self.in_reasoning = True
        self.pending = ""
        self._reasoning_started = False
        self._content_started = False

    def _content(self, text: str) -> str:
        if not self._content_started:
            text = text.lstrip("\n")
            self._content_started = bool(text)
        return text

    def _reasoning(self, text: str) -> str:
        if not self._reasoning_started:
            text = text.lstrip("\n")
            self._reasoning_started = bool(text)
        return text

    def push(self, text: str) -> tuple[str, str]:
        """(reasoning, content) that can be emitted for this piece."""
        if not self.in_reasoning:
            return "", self._content(text)
        self.pending += text
        if not self._reasoning_started:  # the template may leave `<think>` to the model
            stripped = self.pending.lstrip()
            if stripped.startswith(THINK_START):
                self.pending = stripped[len(THINK_START):]
            elif THINK_START.startswith(stripped):
                return "", ""
        i = self.pending.find(THINK_END)
        if i >= 0:
            reasoning, content = self.pending[:i], self.pending[i + len(THINK_END):]
            self.in_reasoning, self.pending = False, ""
            return self._reasoning(reasoning.rstrip("\n")), self._content(content)
        # Hold back trailing newlines too: they may be the ones right before `</think>`.
        hold = partial_suffix_len(self.pending, THINK_END)
        keep = self.pending[: len(self.pending) - hold]
        body = keep.rstrip("\n")
        self.pending = self.pending[len(body):]
        return self._reasoning(body), ""

    def flush(self) -> tuple[str, str]:
        out, self.pending = self.pending, ""
        return (self._reasoning(out), "") if self.in_reasoning else ("", self._content(out))


@dataclass
class ToolCall:
    index: int
    id: str
    name: str
    arguments: str = ""
    type: str = "function"

    def to_message(self) -> dict:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


def parse_call_body(body: str) -> tuple[str, str]:
    """(name, arguments JSON string) of the text between call-begin and call-end."""
    m = _CALL_RE.match(body)
    if not m:
        name, _, rest = body.partition("\n")
        name = name.split(TOOL_SEP)[-1]
    else:
        name, rest = m.group("name"), m.group("rest")
    fence = _FENCE_RE.match(rest)
    args = fence.group("args") if fence else rest
    return name.strip(), args.strip()


@dataclass
class ToolDelta:
    content: str = ""
    calls: list[dict] = field(default_factory=list)  # OpenAI delta.tool_calls entries


def streamable_arguments(body: str) -> str:
    """The part of an unfinished call's arguments that is certain: after the opening fence,
    without what could still be the closing fence, the call-end marker or trailing blanks."""
    after_name = body.split(TOOL_SEP, 1)[1].split("\n", 1)[1].lstrip()
    if after_name.startswith("```"):
        newline = after_name.find("\n")
        if newline < 0:
            return ""
        args = after_name[newline + 1:].lstrip()
    elif "```".startswith(after_name):
        return ""
    else:
        args = after_name
    close = args.find("\n```")
    if close >= 0:
        args = args[:close]
    else:
        hold = max(partial_suffix_len(args, "\n```"), partial_suffix_len(args, CALL_END))
        args = args[: len(args) - hold]
    return args.rstrip()


class ToolCallParser:
    """Content passes through until the calls-begin marker; then calls are collected.

    In streams, a call's id and name go out as soon as the name is complete, then its
    arguments as they are generated (OpenAI clients concatenate the pieces)."""

    def __init__(self):
        self.pending = ""
        self.in_calls = False
        self.done = False
        self.calls: list[ToolCall] = []
        self._announced = False  # current call's name already emitted
        self._sent_args = ""     # arguments of the current call already emitted

    def push(self, text: str) -> ToolDelta:
        delta = ToolDelta()
        if self.done:
            return delta
        self.pending += text
        if not self.in_calls:
            i = self.pending.find(CALLS_BEGIN)
            if i < 0:
                hold = partial_suffix_len(self.pending, CALLS_BEGIN)
                delta.content = self.pending[: len(self.pending) - hold]
                self.pending = self.pending[len(delta.content):]
                return delta
            delta.content, self.pending, self.in_calls = self.pending[:i], self.pending[i + len(CALLS_BEGIN):], True
        while True:
            begin = self.pending.find(CALL_BEGIN)
            if begin < 0:
                if CALLS_END in self.pending:
                    self.done, self.pending = True, ""
                return delta
            body_start = begin + len(CALL_BEGIN)
            end = self.pending.find(CALL_END, body_start)
            body = self.pending[body_start:] if end < 0 else self.pending[body_start:end]
            if not self._announced and TOOL_SEP in body and "\n" in body.split(TOOL_SEP, 1)[1]:
                name = body.split(TOOL_SEP, 1)[1].split("\n", 1)[0].strip()
                call = ToolCall(len(self.calls), f"call_{uuid.uuid4().hex[:24]}", name)
                self.calls.append(call)
                self._announced = True
                delta.calls.append({"index": call.index, "id": call.id, "type": "function",
                                    "function": {"name": name, "arguments": ""}})
            if end < 0:
                if self._announced:
                    self._stream_arguments(streamable_arguments(body), delta)
                return delta
            name, args = parse_call_body(body)
            if not self._announced:
                call = ToolCall(len(self.calls), f"call_{uuid.uuid4().hex[:24]}", name)
                self.calls.append(call)
                delta.calls.append({"index": call.index, "id": call.id, "type": "function",
                                    "function": {"name": name, "arguments": ""}})
            call = self.calls[-1]
            call.name, call.arguments = name, args
            self._stream_arguments(args, delta)
            self._announced, self._sent_args = False, ""
            self.pending = self.pending[end + len(CALL_END):]

    def _stream_arguments(self, args: str, delta: ToolDelta) -> None:
        if args.startswith(self._sent_args) and len(args) > len(self._sent_args):
            delta.calls.append({"index": self.calls[-1].index, "function": {"arguments": args[len(self._sent_args):]}})
            self._sent_args = args

    def flush(self) -> ToolDelta:
        """At the end of output: text that never turned into a call is content."""
        if self.in_calls:
            self.pending = ""
            return ToolDelta()
        out, self.pending = self.pending, ""
        return ToolDelta(content=out)


def merge_tool_deltas(deltas: list[dict]) -> list[dict]:
    """Streamed delta.tool_calls entries folded into complete message tool_calls."""
    calls: dict[int, dict] = {}
    for d in deltas:
        c = calls.setdefault(d["index"], {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
        if d.get("id"):
            c["id"] = d["id"]
        fn = d.get("function", {})
        c["function"]["name"] += fn.get("name", "") or ""
        c["function"]["arguments"] += fn.get("arguments", "") or ""
    return [calls[i] for i in sorted(calls)]
