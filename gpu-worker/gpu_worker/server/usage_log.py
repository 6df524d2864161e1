"""Per-request usage records for reconciliation: GET /v1/usage behind the worker secret.

Every finished generation (ok, stopped, aborted or failed) leaves one record keyed by the gateway's
x-request-id with the tokens the worker served. The gateway bills from the usage it streams; this
is the worker's own account, so that `npm run admin -- reconcile` can find any request served but
never settled. Records live in memory (the last MAX_RECORDS, at most RETAIN_SECONDS), so the
reconciliation window is this process's lifetime within that bound.
"""
from __future__ import annotations

import contextvars
import itertools
import time
from collections import deque
from dataclasses import asdict, dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse

from .protocol import authorized, error_body

MAX_RECORDS = 200_000
RETAIN_SECONDS = 48 * 3600
PAGE_MAX = 5_000

# The gateway's request id of the HTTP request being served (set by RequestIdMiddleware), so that
# Metrics.record can key its record without every handler passing it along.
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_request_id", default=None)


@dataclass
class UsageRecord:
    seq: int
    request_id: str
    endpoint: str
    model: str
    finish_reason: str
    prompt_tokens: int
    prompt_cache_hit_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    finished_at: int  # ms since the epoch


class UsageLog:
    def __init__(self, max_records: int = MAX_RECORDS, retain_seconds: float = RETAIN_SECONDS):
        self.records: deque[UsageRecord] = deque(maxlen=max_records)
        self.retain_ms = int(retain_seconds * 1000)
        self._seq = itertools.count(1)

    def record(self, endpoint: str, model: str, finish_reason: str, usage) -> None:
        request_id = current_request_id.get()
        if request_id is None:  # not a gateway request (no x-request-id): nothing to reconcile
            return
        now = int(time.time() * 1000)
        self.records.append(UsageRecord(next(self._seq), request_id, endpoint, model, finish_reason, usage.prompt_tokens,
                                        usage.cached_tokens, usage.completion_tokens, usage.reasoning_tokens, now))
        while self.records and self.records[0].finished_at < now - self.retain_ms:
            self.records.popleft()

    def page(self, since_ms: int, after_seq: int, limit: int) -> list[UsageRecord]:
        out = []
        # seq numbers are consecutive in the deque, so the records at or before after_seq are skipped
        # by position (in C) rather than read one by one here, on the event loop
        skip = max(0, after_seq - self.records[0].seq + 1) if self.records else 0
        for r in itertools.islice(self.records, skip, None):
            if r.seq > after_seq and r.finished_at >= since_ms:
                out.append(r)
                if len(out) == limit:
                    break
        return out


class RequestIdMiddleware:
    """Pure ASGI: makes the x-request-id of each HTTP request the current request id."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = dict(scope.get("headers") or []).get(b"x-request-id")
        token = current_request_id.set(request_id.decode("latin-1") if request_id else None)
        try:
            await self.app(scope, receive, send)
        finally:
            current_request_id.reset(token)


def install_usage_log(app, state) -> None:
    """GET /v1/usage?since=<ms>&after=<seq>&limit=<n>: records in order, and `next_after` to continue."""

    async def usage(request: Request) -> JSONResponse:
        if not authorized(request, state.secret):
            return JSONResponse(error_body("Authentication Fails (worker secret)", "authentication_error", "invalid_api_key"),
                                status_code=401)
        try:
            since = int(request.query_params.get("since", "0"))
            after = int(request.query_params.get("after", "0"))
            limit = min(PAGE_MAX, max(1, int(request.query_params.get("limit", "1000"))))
        except ValueError:
            return JSONResponse(error_body("since, after and limit must be integers", "invalid_request_error",
                                           "invalid_request_error"), status_code=400)
        records = state.metrics.usage_log.page(since, after, limit)
        return JSONResponse({"object": "list", "data": [asdict(r) for r in records],
                             "next_after": records[-1].seq if len(records) == limit else None})

    app.add_route("/v1/usage", usage, methods=["GET"])
    app.add_middleware(RequestIdMiddleware)
