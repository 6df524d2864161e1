"""Token ids to text, one token at a time, never emitting half a UTF-8 character."""
from __future__ import annotations

from functools import lru_cache


def _byte_of_char() -> dict[str, int]:
    """The byte-level BPE alphabet: every byte has a printable stand-in character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {chr(b): b for b in printable} | {chr(256 + i): b for i, b in enumerate(others)}


_BYTE_OF_CHAR = _byte_of_char()


class TokenText:
    """Per-token strings and bytes, as the logprobs fields need them."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.special = {t.content for t in tokenizer.get_added_tokens_decoder().values()}
        self.token_bytes = lru_cache(maxsize=65536)(self._token_bytes)

    def _token_bytes(self, token_id: int) -> bytes:
        piece = self.tokenizer.id_to_token(token_id)
        if piece is None:
            return b""
        if piece in self.special or any(c not in _BYTE_OF_CHAR for c in piece):
            return piece.encode()
        return bytes(_BYTE_OF_CHAR[c] for c in piece)

    def token_str(self, token_id: int) -> str:
        return self.token_bytes(token_id).decode("utf-8", errors="replace")


class IncrementalDetokenizer:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0  # start of the window decoded for context
        self.read_offset = 0    # ids before this are already emitted

    def _unread_text(self) -> str:
        """The text of the ids not emitted yet, decoded after a few emitted ones for context."""
        def decode(ids):
            return self.tokenizer.decode(ids, skip_special_tokens=False)
        before = decode(self.ids[self.prefix_offset:self.read_offset])
        return decode(self.ids[self.prefix_offset:])[len(before):]

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = self._unread_text()
        if not text or text.endswith("\ufffd"):
            return ""
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        return text

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character at the very end)."""
        text = self._unread_text() if self.read_offset < len(self.ids) else ""
        self.prefix_offset = self.read_offset = len(self.ids)
        return text
