"""PromptRenderer: request -> prompt token ids, exactly as the gateway counts them."""

import hashlib
import json
import logging
from pathlib import Path

from tokenizers import Tokenizer

from .chat_format import SPECIAL_TOKENS, render_chat, render_fim

log = logging.getLogger(__name__)

# sha256 of the chat_template our rendering reproduces (DeepSeek-V3's, as shipped with the tokenizer).
KNOWN_TEMPLATE_SHA256 = "3b8267e54b67df6500f231ffa969955cc9d26b3444a291ced4eb96ca7d3ca1ea"


class PromptRenderer:
    def __init__(self, tokenizer_dir: str | Path):
        tokenizer_dir = Path(tokenizer_dir)
        self.tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        for token in SPECIAL_TOKENS:
            if self.tokenizer.token_to_id(token) is None:
                raise ValueError(f"tokenizer has no token {token!r}")
        config = tokenizer_dir / "tokenizer_config.json"
        template = json.loads(config.read_text(encoding="utf-8") if config.exists() else "{}").get(
            "chat_template")
        if (isinstance(template, str)
                and hashlib.sha256(template.encode()).hexdigest() != KNOWN_TEMPLATE_SHA256):
            log.warning("%s has a chat_template other than DeepSeek-V3's; prompts follow "
                        "DeepSeek-V3's rules (workers/gateway/src/tokenizer/README.md) so that "
                        "gateway and worker counts agree", config)

    def encode(self, text: str) -> list[int]:
        # The tokenizer's post-processor adds no BOS; the rendered text carries its own.
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def chat_ids(self, messages: list, tools: list | None = None,
                 model: str = "deepseek-chat") -> list[int]:
        return self.encode(render_chat(messages, tools, model))

    def fim_ids(self, prompt: str, suffix: str | None = None) -> list[int]:
        return self.encode(render_fim(prompt, suffix))
