"""PromptRenderer: request -> prompt token ids, exactly as the gateway counts them."""

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from . import chat_format as f

log = logging.getLogger(__name__)

# sha256 of the chat_template our rendering reproduces (DeepSeek-V3's, as shipped with the tokenizer).
KNOWN_TEMPLATE_SHA256 = "3b8267e54b67df6500f231ffa969955cc9d26b3444a291ced4eb96ca7d3ca1ea"


@dataclass(frozen=True)
class SpecialTokens:
    bos: int
    eos: int
    user: int
    assistant: int
    tool_calls_begin: int
    tool_calls_end: int
    tool_call_begin: int
    tool_call_end: int
    tool_sep: int
    tool_outputs_begin: int
    tool_outputs_end: int
    tool_output_begin: int
    tool_output_end: int
    fim_begin: int
    fim_hole: int
    fim_end: int
    # <think> and </think> are ordinary text in this vocabulary (several tokens each, and their
    # last token may merge with what follows), so find them in decoded text, not by ids.
    think_begin: tuple[int, ...]
    think_end: tuple[int, ...]


class PromptRenderer:
    def __init__(self, tokenizer_dir: str | Path):
        tokenizer_dir = Path(tokenizer_dir)
        self.tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        self._check_template(tokenizer_dir / "tokenizer_config.json")
        token_id = self._token_id
        self.special = SpecialTokens(
            bos=token_id(f.BOS), eos=token_id(f.EOS), user=token_id(f.USER), assistant=token_id(f.ASSISTANT),
            tool_calls_begin=token_id(f.TOOL_CALLS_BEGIN), tool_calls_end=token_id(f.TOOL_CALLS_END),
            tool_call_begin=token_id(f.TOOL_CALL_BEGIN), tool_call_end=token_id(f.TOOL_CALL_END),
            tool_sep=token_id(f.TOOL_SEP),
            tool_outputs_begin=token_id(f.TOOL_OUTPUTS_BEGIN), tool_outputs_end=token_id(f.TOOL_OUTPUTS_END),
            tool_output_begin=token_id(f.TOOL_OUTPUT_BEGIN), tool_output_end=token_id(f.TOOL_OUTPUT_END),
            fim_begin=token_id(f.FIM_BEGIN), fim_hole=token_id(f.FIM_HOLE), fim_end=token_id(f.FIM_END),
            think_begin=tuple(self.encode(f.THINK_BEGIN)), think_end=tuple(self.encode(f.THINK_END)),
        )

    def encode(self, text: str) -> list[int]:
        # The tokenizer's post-processor adds no BOS; the rendered text carries its own.
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def chat_text(self, messages: list, tools: list | None = None, model: str = "deepseek-chat") -> str:
        return f.render_chat(messages, tools, model)

    def chat_ids(self, messages: list, tools: list | None = None, model: str = "deepseek-chat") -> list[int]:
        return self.encode(self.chat_text(messages, tools, model))

    def fim_text(self, prompt: str, suffix: str | None = None) -> str:
        return f.render_fim(prompt, suffix)

    def fim_ids(self, prompt: str, suffix: str | None = None) -> list[int]:
        return self.encode(self.fim_text(prompt, suffix))

    def _token_id(self, content: str) -> int:
        token_id = self.tokenizer.token_to_id(content)
        if token_id is None:
            raise ValueError(f"tokenizer has no token {content!r}")
        return token_id

    @staticmethod
    def _check_template(config_path: Path) -> None:
        if not config_path.exists():
            return
        template = json.loads(config_path.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(template, str) and hashlib.sha256(template.encode()).hexdigest() != KNOWN_TEMPLATE_SHA256:
            log.warning("%s has a chat_template other than DeepSeek-V3's; prompts follow DeepSeek-V3's rules "
                        "(workers/gateway/src/tokenizer/README.md) so that gateway and worker counts agree", config_path)
