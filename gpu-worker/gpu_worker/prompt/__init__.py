"""Prompt rendering: chat template, tool definitions, reasoner and FIM prompts -> token ids.

The same rules run in the gateway (workers/gateway/src/tokenizer/), which counts prompt tokens
before forwarding; both are held to test/fixtures/tokenizer/vectors.json.
"""

from .chat_format import render_chat, render_fim
from .renderer import PromptRenderer, SpecialTokens

__all__ = ["PromptRenderer", "SpecialTokens", "render_chat", "render_fim"]
