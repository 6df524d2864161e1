"""Streaming matchers over output text in arbitrary pieces, each holding back only what could still
start a marker: stop strings, deepseek-reasoner's `</think>`, and DeepSeek's tool calls:

  <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>
  ...more calls...<｜tool▁calls▁end｜>
"""
from __future__ import annotations

import re
import uuid

from gpu_worker.prompt.chat_format import (THINK_BEGIN, THINK_END, TOOL_CALL_BEGIN, TOOL_CALL_END,
                                           TOOL_CALLS_BEGIN, TOOL_CALLS_END, TOOL_SEP)

_CALL_RE = re.compile(
    r"^\s*(?P<type>[^\n]*?)" + re.escape(TOOL_SEP) + r"(?P<name>[^\n]*)\n(?P<rest>.*)$", re.S)
_FENCE_RE = re.compile(r"^\s*```(?:json)?\s*\n?(?P<args>.*?)\n?```\s*$", re.S)


def release(pending: str, *markers: str) -> tuple[str, str]:
    """(what can go out, what is held back): the held part is the longest suffix of pending that
    is a proper prefix of a marker."""
    hold = max((n for m in markers for n in range(1, min(len(pending) + 1, len(m)))
                if pending.endswith(m[:n])), default=0)
    return pending[: len(pending) - hold], pending[len(pending) - hold:]


class StopStringMatcher:
    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.stopped = False
        self.matched: str | None = None  # which stop string ended the output (vLLM's stop_reason)

    def push(self, text: str) -> str:
        """Text that is safe to emit now; sets .stopped when a stop string completed."""
        if self.stopped:
            return ""
        self.pending += text
        hits = [(self.pending.find(s), s) for s in self.stops if s in self.pending]
        if hits:
            first, self.matched = min(hits)
            out, self.pending, self.stopped = self.pending[:first], "", True
            return out
        out, self.pending = release(self.pending, *self.stops)
        return out

    def flush(self) -> str:
        out, self.pending = self.pending, ""  # nothing is pending once stopped
        return out


class ReasoningParser:
    """Text before `</think>` is reasoning, after it content; the newlines the model puts
    around the marker are trimmed, as DeepSeek's API does."""

    def __init__(self):
        self.in_reasoning = True
        self.pending = ""
        self._started: set[str] = set()  # the parts whose first text went out

    def _part(self, part: str, text: str) -> str:
        if part not in self._started:
            text = text.lstrip("\n")
            if text:
                self._started.add(part)
        return text

    def push(self, text: str) -> tuple[str, str]:
        """(reasoning, content) that can be emitted for this piece."""
        if not self.in_reasoning:
            return "", self._part("content", text)
        self.pending += text
        if "reasoning" not in self._started:  # the template may leave `<think>` to the model
            stripped = self.pending.lstrip()
            if stripped.startswith(THINK_BEGIN):
                self.pending = stripped[len(THINK_BEGIN):]
            elif THINK_BEGIN.startswith(stripped):
                return "", ""
        i = self.pending.find(THINK_END)
        if i >= 0:
            reasoning, content = self.pending[:i], self.pending[i + len(THINK_END):]
            self.in_reasoning, self.pending = False, ""
            return self._part("reasoning", reasoning.rstrip("\n")), self._part("content", content)
        # Hold back trailing newlines too: they may be the ones right before `</think>`.
        body = release(self.pending, THINK_END)[0].rstrip("\n")
        self.pending = self.pending[len(body):]
        return self._part("reasoning", body), ""

    def flush(self) -> tuple[str, str]:
        out, self.pending = self.pending, ""
        if self.in_reasoning:
            return self._part("reasoning", out), ""
        return "", self._part("content", out)


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
    return (args[:close] if close >= 0 else release(args, "\n```", TOOL_CALL_END)[0]).rstrip()


class ToolCallParser:
    """Content passes through until the calls-begin marker. A call's id and name go out once the
    name is complete, then its arguments as generated (OpenAI clients concatenate them)."""

    def __init__(self):
        self.pending = ""
        self.in_calls = False
        self.done = False
        self.calls: list[dict] = []  # OpenAI message tool_calls
        self._sent_args: str | None = None  # the current call's arguments sent; None: not announced

    def push(self, text: str, delta) -> None:
        """Adds this piece's content and tool_calls entries to delta (an output.OutputDelta)."""
        if self.done:
            return
        self.pending += text
        if not self.in_calls:
            i = self.pending.find(TOOL_CALLS_BEGIN)
            if i < 0:
                content, self.pending = release(self.pending, TOOL_CALLS_BEGIN)
                delta.content += content
                return
            delta.content += self.pending[:i]
            self.pending, self.in_calls = self.pending[i + len(TOOL_CALLS_BEGIN):], True
        while True:
            begin = self.pending.find(TOOL_CALL_BEGIN)
            if begin < 0:
                if TOOL_CALLS_END in self.pending:
                    self.done, self.pending = True, ""
                return
            body_start = begin + len(TOOL_CALL_BEGIN)
            end = self.pending.find(TOOL_CALL_END, body_start)
            body = self.pending[body_start:] if end < 0 else self.pending[body_start:end]
            after_sep = body.partition(TOOL_SEP)[2]
            if self._sent_args is None and "\n" in after_sep:
                self._announce(after_sep.split("\n", 1)[0].strip(), delta)
            if end < 0:
                if self._sent_args is not None:
                    self._stream_arguments(streamable_arguments(body), delta)
                return
            name, args = parse_call_body(body)
            if self._sent_args is None:
                self._announce(name, delta)
            self.calls[-1]["function"] = {"name": name, "arguments": args}
            self._stream_arguments(args, delta)
            self._sent_args = None
            self.pending = self.pending[end + len(TOOL_CALL_END):]

    def _announce(self, name: str, delta) -> None:
        call = {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function"}
        delta.tool_calls.append({"index": len(self.calls), **call,
                                 "function": {"name": name, "arguments": ""}})
        self.calls.append(dict(call, function={"name": name, "arguments": ""}))
        self._sent_args = ""

    def _stream_arguments(self, args: str, delta) -> None:
        sent = self._sent_args
        if args.startswith(sent) and len(args) > len(sent):
            piece = {"arguments": args[len(sent):]}
            delta.tool_calls.append({"index": len(self.calls) - 1, "function": piece})
            self._sent_args = args

    def flush(self) -> str:
        """At the end of output: text that never turned into a call is content."""
        out, self.pending = ("" if self.in_calls else self.pending), ""
        return out
