"""One request's output path: token ids -> text -> stop strings -> reasoning / tool calls."""
from __future__ import annotations

from dataclasses import dataclass, field

from .detokenizer import IncrementalDetokenizer
from .parsers import ReasoningParser, StopStringMatcher, ToolCallParser


@dataclass
class OutputDelta:
    content: str = ""
    reasoning: str = ""
    tool_calls: list[dict] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)  # tokens consumed in this delta


class OutputProcessor:
    def __init__(self, tokenizer, stop: list[str] | None = None, reasoning: bool = False,
                 tools: bool = False, hidden_token_ids: set[int] | frozenset = frozenset()):
        self.detok = IncrementalDetokenizer(tokenizer)
        self.stop = StopStringMatcher(stop or [])
        self.reasoning = ReasoningParser() if reasoning else None
        self.tools = ToolCallParser() if tools else None
        self.hidden_token_ids = hidden_token_ids  # end-of-sequence tokens: counted, never shown
        self.completion_tokens = 0
        self.reasoning_tokens = 0
        # deepseek-reasoner: max_tokens bounds the answer; the chain of thought has its own budget.
        self.max_answer_tokens: int | None = None
        self.answer_limit_reached = False

    @property
    def ended_early(self) -> bool:
        """The output is complete although the engine may still be generating."""
        return self.stop.stopped or self.answer_limit_reached

    @property
    def has_tool_calls(self) -> bool:
        return bool(self.tools and self.tools.calls)

    def _route(self, text: str, delta: OutputDelta) -> None:
        if self.reasoning is not None:
            reasoning, text = self.reasoning.push(text)
            delta.reasoning += reasoning
        self._answer(text, delta)

    def _answer(self, text: str, delta: OutputDelta) -> None:
        """Answer text (after any reasoning): tool calls are parsed out when tools were given."""
        if self.tools is None:
            delta.content += text
        else:
            self.tools.push(text, delta)

    def push(self, token_ids: list[int]) -> OutputDelta:
        delta = OutputDelta()
        for token_id in token_ids:
            if self.ended_early:
                break  # generated after a stop string, before the engine heard of it
            self.completion_tokens += 1
            if self.reasoning is not None and self.reasoning.in_reasoning:
                self.reasoning_tokens += 1
            delta.token_ids.append(token_id)
            if token_id in self.hidden_token_ids:
                continue
            self._route(self.stop.push(self.detok.push(token_id)), delta)
            if (self.max_answer_tokens is not None
                    and self.completion_tokens - self.reasoning_tokens >= self.max_answer_tokens):
                self.answer_limit_reached = True
        return delta

    def finish(self, delta: OutputDelta) -> OutputDelta:
        """Adds to delta whatever was held back, at the end of the output."""
        if not self.stop.stopped:
            self._route(self.stop.push(self.detok.flush()), delta)
            self._route(self.stop.flush(), delta)
        if self.reasoning is not None:
            reasoning, content = self.reasoning.flush()
            delta.reasoning += reasoning
            self._answer(content, delta)
        if self.tools is not None:
            delta.content += self.tools.flush()
        return delta
