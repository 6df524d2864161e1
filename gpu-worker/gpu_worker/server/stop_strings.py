"""Stop strings over streamed text: the stop string never reaches the client, and text that
could be the start of one is held back until it is known not to be."""
from __future__ import annotations


def partial_suffix_len(text: str, needle: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of needle."""
    for n in range(min(len(text), len(needle) - 1), 0, -1):
        if text.endswith(needle[:n]):
            return n
    return 0


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
        if not self.stops:
            return text
        self.pending += text
        hits = [(i, s) for s, i in ((s, self.pending.find(s)) for s in self.stops) if i >= 0]
        if hits:
            first, self.matched = min(hits)
            self.stopped = True
            out, self.pending = self.pending[:first], ""
            return out
        hold = max(partial_suffix_len(self.pending, s) for s in self.stops)
        out = self.pending[: len(self.pending) - hold]
        self.pending = self.pending[len(out):]
        return out

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return "" if self.stopped else out
