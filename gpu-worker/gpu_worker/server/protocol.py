"""The wire format: request fields to sampling parameters, usage, logprobs, errors, SSE."""
from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from itertools import accumulate

from starlette.responses import JSONResponse

from gpu_worker.engine.sequence import SamplingParams

from .detokenizer import TokenText

# (name, default, lo, hi) of the sampling fields; deepseek-reasoner accepts and ignores them.
SAMPLING_FIELDS = (("temperature", 1.0, 0.0, 2.0), ("top_p", 1.0, 0.0, 1.0),
                   ("frequency_penalty", 0.0, -2.0, 2.0), ("presence_penalty", 0.0, -2.0, 2.0))


class RequestError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 code: str | None = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param

    def response(self) -> JSONResponse:
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return JSONResponse({"error": error}, status_code=self.status)


def unauthorized() -> RequestError:
    return RequestError(401, "Authentication Fails (worker secret)", "authentication_error",
                        "invalid_api_key")


def authorized(request, secret: str | None) -> bool:
    """No secret set (development), or `Authorization: Bearer <secret>`, compared in constant time."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return not secret or (scheme.lower() == "bearer"
                          and hmac.compare_digest(token.strip().encode(), secret.encode()))


def checked(value, name: str, lo, hi, types=(int, float), status: int = 422):
    """value, if it is a number of `types` (never a bool) within [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, types) or not lo <= value <= hi:
        message = f"Invalid {name} value, the valid range of {name} is [{lo}, {hi}]"
        raise RequestError(status, message, param=name)
    return value


def stop_list(body: dict) -> list[str]:
    stop = body.get("stop")
    stops = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if isinstance(stops, list) and len(stops) <= 16 and all(isinstance(s, str) for s in stops):
        return stops
    raise RequestError(400, "stop must be a string or a list of at most 16 strings", param="stop")


def sampling_params(body: dict, reasoner: bool, max_tokens_range: tuple[int, int],
                    top_logprobs: int) -> SamplingParams:
    """max_tokens_range: (default, largest allowed); top_logprobs: -1 when logprobs are off."""
    max_tokens = body.get("max_tokens")
    max_tokens = max_tokens_range[0] if max_tokens is None else max_tokens
    checked(max_tokens, "max_tokens", 1, max_tokens_range[1], int, 400)
    values = [float(checked(body[name], name, lo, hi)) if body.get(name) is not None else unset
              for name, unset, lo, hi in SAMPLING_FIELDS]
    if reasoner:
        values = [unset for _, unset, _, _ in SAMPLING_FIELDS]
    temperature, top_p, frequency, presence = values
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise RequestError(422, "seed must be an integer", param="seed")
    return SamplingParams(temperature=temperature, top_p=max(top_p, 1e-6), frequency_penalty=frequency,
                          presence_penalty=presence, max_tokens=max_tokens,
                          logprobs=top_logprobs >= 0, top_logprobs=max(top_logprobs, 0), seed=seed)


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


def chat_logprobs(text: TokenText, logprobs) -> dict:
    def entry(token_id, lp):
        b = text.token_bytes(token_id)
        return {"token": b.decode("utf-8", errors="replace"), "logprob": lp, "bytes": list(b)}
    return {"content": [dict(entry(lp.token_id, lp.logprob),
                             top_logprobs=[entry(t, v) for t, v in lp.top]) for lp in logprobs]}


def completion_logprobs(text: TokenText, logprobs, offset: int) -> dict:
    """offset: where in the choice's text the first of these tokens starts."""
    tokens = [text.token_str(lp.token_id) for lp in logprobs]
    return {"tokens": tokens, "token_logprobs": [lp.logprob for lp in logprobs],
            "top_logprobs": [{text.token_str(t): v for t, v in lp.top} for lp in logprobs],
            "text_offset": list(accumulate(map(len, tokens), initial=offset))[:-1]}


def sse(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False,
                                                               separators=(",", ":"))
    return f"data: {data}\n\n".encode()
