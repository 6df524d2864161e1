"""A request inside the engine: its tokens, its cache blocks and how it samples."""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    max_tokens: int = 4096
    stop_token_ids: tuple[int, ...] = ()
    logprobs: bool = False
    top_logprobs: int = 0
    seed: int | None = None
    ignore_eos: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature <= 1e-5


@dataclass
class TokenLogprob:
    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)


_serials = itertools.count()


class Sequence:
    def __init__(self, request_id: str, prompt_ids: list[int], params: SamplingParams,
                 namespace: str = ""):
        if not prompt_ids:
            raise ValueError("empty prompt")
        self.request_id = request_id
        self.token_ids: list[int] = list(prompt_ids)
        self.num_prompt_tokens = len(prompt_ids)
        self.params = params
        self.namespace = namespace
        self.block_table: list[int] = []
        self.block_keys: list[bytes] = []  # prefix-cache keys of its full blocks, in order
        # Tokens whose latents are in the cache (prefix hits included).
        self.num_computed_tokens = 0
        # Prompt tokens served from the prefix cache at first admission; what usage reports.
        self.num_cached_prompt_tokens: int | None = None
        self.finish_reason: str | None = None  # set when it finishes
        # The sampler's noise stream: the request's seed, or a random one.
        self.seed = params.seed if params.seed is not None else random.getrandbits(63)
        self.num_preemptions = 0
        self.serial = next(_serials)  # unique in the process, unlike request ids

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def output_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens:]

    @property
    def is_finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def table_key(self) -> tuple[int, int]:
        """Changes whenever block_table may have been rewritten rather than grown (a preemption
        frees it)."""
        return self.serial, self.num_preemptions

    def append_token(self, token_id: int) -> None:
        self.token_ids.append(token_id)
