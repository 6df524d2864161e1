"""The wire format: request fields to sampling parameters, responses, chunks, usage, errors."""
from __future__ import annotations

import hmac
import json
import time
import uuid
from dataclasses import dataclass

from gpu_worker.engine.sequence import SamplingParams

from .detokenizer import TokenText

REASONER_MODELS = ("deepseek-reasoner",)
SYSTEM_FINGERPRINT = "fp_gpu_worker"


class RequestError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 code: str | None = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param

    def body(self) -> dict:
        return error_body(self.message, self.type, self.code, self.param)


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def authorized(request, secret: str | None) -> bool:
    """No secret set (development), or `Authorization: Bearer <secret>`, compared in constant time."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return not secret or (scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), secret.encode()))


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4()}"


def _number(body: dict, name: str, default: float, lo: float, hi: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise RequestError(422, f"Invalid {name} value, the valid range of {name} is [{lo}, {hi}]", param=name)
    return float(value)


def stop_list(body: dict) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= 16:
        return stop
    raise RequestError(400, "stop must be a string or a list of at most 16 strings", param="stop")


def sampling_params(body: dict, *, reasoner: bool, default_max_tokens: int, max_max_tokens: int,
                    top_logprobs: int) -> SamplingParams:
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        max_tokens = default_max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= max_max_tokens:
        raise RequestError(400, f"Invalid max_tokens value, the valid range of max_tokens is [1, {max_max_tokens}]",
                           param="max_tokens")
    temperature = _number(body, "temperature", 1.0, 0.0, 2.0)
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    frequency = _number(body, "frequency_penalty", 0.0, -2.0, 2.0)
    presence = _number(body, "presence_penalty", 0.0, -2.0, 2.0)
    if reasoner:  # accepted and ignored, as the contract says
        temperature, top_p, frequency, presence = 1.0, 1.0, 0.0, 0.0
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError(422, "seed must be an integer", param="seed")
    return SamplingParams(temperature=temperature, top_p=max(top_p, 1e-6), frequency_penalty=frequency,
                          presence_penalty=presence, max_tokens=max_tokens,
                          logprobs=top_logprobs >= 0, top_logprobs=max(top_logprobs, 0), seed=seed)


def chat_top_logprobs(body: dict) -> int:
    """-1 when logprobs are off, else how many alternatives per token."""
    if not body.get("logprobs"):
        return -1
    n = body.get("top_logprobs") or 0
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 20:
        raise RequestError(422, "Invalid top_logprobs value, the valid range of top_logprobs is [0, 20]",
                           param="top_logprobs")
    return n


def completion_top_logprobs(body: dict) -> int:
    n = body.get("logprobs")
    if n is None or n is False:
        return -1
    if isinstance(n, bool):
        return 0
    if not isinstance(n, int) or not 0 <= n <= 20:
        raise RequestError(422, "Invalid logprobs value, the valid range of logprobs is [0, 20]", param="logprobs")
    return n


@dataclass
class Usage:
    prompt_tokens: int
    cached_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0

    def to_dict(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_cache_hit_tokens": self.cached_tokens,
            "prompt_cache_miss_tokens": self.prompt_tokens - self.cached_tokens,
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }


def chat_logprobs(text: TokenText, logprobs) -> list[dict]:
    def entry(token_id, lp):
        b = text.token_bytes(token_id)
        return {"token": b.decode("utf-8", errors="replace"), "logprob": lp, "bytes": list(b)}
    return [dict(entry(l.token_id, l.logprob), top_logprobs=[entry(t, v) for t, v in l.top]) for l in logprobs]


def completion_logprobs(text: TokenText, logprobs, start_offset: int) -> dict:
    tokens, token_lps, tops, offsets = [], [], [], []
    offset = start_offset
    for l in logprobs:
        s = text.token_str(l.token_id)
        tokens.append(s)
        token_lps.append(l.logprob)
        tops.append({text.token_str(t): v for t, v in l.top})
        offsets.append(offset)
        offset += len(s)
    return {"tokens": tokens, "token_logprobs": token_lps, "top_logprobs": tops, "text_offset": offsets}


def sse(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def now() -> int:
    return int(time.time())
