"""Prompts -> token ids, by the same rules as the gateway's token counting (both are held to
test/fixtures/tokenizer/vectors.json)."""
