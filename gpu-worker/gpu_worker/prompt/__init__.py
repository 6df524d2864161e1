"""Prompt rendering: chat template, tool definitions, reasoner and FIM prompts -> token ids.

The same rules run in the gateway (workers/gateway/src/tokenizer/), which counts prompt tokens
before forwarding; both are held to test/fixtures/tokenizer/vectors.json.
"""
