"""GET /v1/usage: one record per finished gateway request (x-request-id) of the tokens served,
the worker's own account against which `npm run admin -- reconcile` finds requests served but never
settled. In memory: the last MAX_RECORDS, at most RETAIN_SECONDS old.
"""
from __future__ import annotations

import itertools
import time
from collections import deque

from starlette.requests import Request
from starlette.responses import JSONResponse

from .protocol import RequestError, authorized, unauthorized

MAX_RECORDS = 200_000
RETAIN_SECONDS = 48 * 3600
PAGE_MAX = 5_000


class UsageLog:
    def __init__(self, max_records: int = MAX_RECORDS, retain_seconds: float = RETAIN_SECONDS):
        self.records: deque[dict] = deque(maxlen=max_records)
        self.retain_ms = int(retain_seconds * 1000)
        self._seq = itertools.count(1)

    def record(self, request_id: str | None, endpoint: str, model: str, finish_reason: str,
               usage) -> None:
        if request_id is None:  # not a gateway request (no x-request-id): nothing to reconcile
            return
        now = int(time.time() * 1000)
        self.records.append({
            "seq": next(self._seq), "request_id": request_id, "endpoint": endpoint, "model": model,
            "finish_reason": finish_reason, "prompt_tokens": usage.prompt_tokens,
            "prompt_cache_hit_tokens": usage.cached_tokens,
            "completion_tokens": usage.completion_tokens,
            "reasoning_tokens": usage.reasoning_tokens, "finished_at": now})  # ms since the epoch
        while self.records and self.records[0]["finished_at"] < now - self.retain_ms:
            self.records.popleft()

    def page(self, since_ms: int, after_seq: int, limit: int) -> list[dict]:
        # seq numbers are consecutive in the deque, so the records at or before after_seq are skipped
        # by position (in C) rather than read one by one here, on the event loop
        skip = max(0, after_seq - self.records[0]["seq"] + 1) if self.records else 0
        wanted = (r for r in itertools.islice(self.records, skip, None)
                  if r["seq"] > after_seq and r["finished_at"] >= since_ms)
        return list(itertools.islice(wanted, limit))


def usage_endpoint(log: UsageLog, secret: str | None):
    """GET /v1/usage?since=<ms>&after=<seq>&limit=<n>: records in order, and `next_after` to continue."""

    async def usage(request: Request) -> JSONResponse:
        if not authorized(request, secret):
            return unauthorized().response()
        query = request.query_params
        try:
            since, after = int(query.get("since", "0")), int(query.get("after", "0"))
            limit = min(PAGE_MAX, max(1, int(query.get("limit", "1000"))))
        except ValueError:
            return RequestError(400, "since, after and limit must be integers").response()
        records = log.page(since, after, limit)
        return JSONResponse({"object": "list", "data": records,
                             "next_after": records[-1]["seq"] if len(records) == limit else None})

    return usage
