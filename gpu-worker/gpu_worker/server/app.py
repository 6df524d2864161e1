"""Starlette app: the gateway protocol of docs/architecture.md over the async engine."""
from __future__ import annotations

import asyncio
import os
import json
import logging
import time
import uuid
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from gpu_worker.engine.async_engine import AsyncEngine
from gpu_worker.engine.engine import PromptTooLong

from .detokenizer import TokenText
from .metrics import Metrics
from .output import OutputDelta, OutputProcessor
from .protocol import (REASONER_MODELS, SYSTEM_FINGERPRINT, RequestError, Usage, authorized, chat_logprobs,
                       chat_top_logprobs, completion_logprobs, completion_top_logprobs, error_body, new_id, now,
                       sampling_params, sse, stop_list)
from .usage_log import install_usage_log

log = logging.getLogger("gpu_worker.server")
EOS_TOKEN = "<｜end▁of▁sentence｜>"


@dataclass
class WorkerState:
    engine: AsyncEngine
    renderer: object                 # gpu_worker.prompt.PromptRenderer
    served_models: list[str]
    secret: str | None = None
    default_max_tokens: int = 4096
    max_max_tokens: int = 8192
    max_reasoning_tokens: int = 32768
    max_fim_tokens: int = 4096
    metrics: Metrics = field(default_factory=Metrics)
    draining: bool = False
    ranks: object | None = None      # gpu_worker.parallel.launcher.Ranks on rank 0 of a tensor-parallel worker

    @property
    def lost_ranks(self) -> str | None:
        return self.ranks.failure if self.ranks is not None else None

    def rank_states(self) -> list[dict] | None:
        if self.ranks is None:
            return None
        return self.ranks.snapshot({"state": "serving", "pid": os.getpid(), "device": str(self.engine.engine.device)})

    def __post_init__(self):
        self.tokenizer = self.renderer.tokenizer
        self.token_text = TokenText(self.tokenizer)
        eos = self.tokenizer.token_to_id(EOS_TOKEN)
        self.eos_ids = frozenset({eos} if eos is not None else set())


# ---- one generation, shared by both endpoints and both modes ----------------------------------
@dataclass
class Event:
    delta: OutputDelta
    logprobs: list
    finish_reason: str | None
    usage: Usage


class EngineFailure(Exception):
    pass


class Generation:
    def __init__(self, state: WorkerState, prompt_ids: list[int], params, namespace: str,
                 processor: OutputProcessor, endpoint: str, model: str):
        self.state, self.processor = state, processor
        self.engine_id = uuid.uuid4().hex  # engine-internal; retries may reuse the gateway's id
        self.usage = Usage(prompt_tokens=len(prompt_ids))
        self.endpoint, self.model = endpoint, model
        self.finished = False
        self.started = time.monotonic()
        self.first_token_at: float | None = None
        try:
            self.handle = state.engine.submit(self.engine_id, prompt_ids, params, namespace)
        except PromptTooLong as exc:
            raise RequestError(400, str(exc)) from None

    async def events(self):
        proc = self.processor
        try:
            while True:
                out = await self.handle.queue.get()
                if out is None:  # the engine already dropped the request
                    self.finish("insufficient_system_resource")
                    raise EngineFailure(str(self.handle.error))
                if self.first_token_at is None and out.new_token_ids:
                    self.first_token_at = time.monotonic()
                    self.state.metrics.ttft_sum += self.first_token_at - self.started
                    self.state.metrics.ttft_count += 1
                delta = proc.push(out.new_token_ids)
                logprobs = out.new_logprobs[: len(delta.token_ids)]
                self.usage.cached_tokens = out.seq.num_cached_prompt_tokens or 0
                self.usage.completion_tokens = proc.completion_tokens
                self.usage.reasoning_tokens = proc.reasoning_tokens
                if not (out.finished or proc.ended_early):
                    yield Event(delta, logprobs, None, self.usage)
                    continue
                if proc.ended_early and not out.finished:
                    self.state.engine.abort(self.engine_id, "stop")
                tail = proc.finish()
                delta.content += tail.content
                delta.reasoning += tail.reasoning
                delta.tool_calls += tail.tool_calls
                if proc.stopped_by_string:
                    reason = "stop"
                elif proc.answer_limit_reached:
                    reason = "length"
                else:
                    reason = out.seq.finish_reason or "stop"
                if reason == "abort":
                    reason = "stop"
                if reason == "stop" and proc.has_tool_calls:
                    reason = "tool_calls"
                self.finish(reason)
                yield Event(delta, logprobs, reason, self.usage)
                return
        finally:
            if not self.finished:  # client went away, or the consumer stopped early
                self.state.engine.abort(self.engine_id, "abort")
                self.finish("abort")

    def finish(self, reason: str) -> None:
        if not self.finished:
            self.finished = True
            self.state.metrics.record(self.endpoint, self.model, reason, self.usage)


async def wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def collect(request: Request, gen: Generation) -> list[Event]:
    """Run a non-streaming generation to the end, or abort it when the client leaves."""
    events: list[Event] = []

    async def consume():
        async for event in gen.events():
            events.append(event)

    consumer = asyncio.ensure_future(consume())
    watcher = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({consumer, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not consumer.done():
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
    if consumer not in done:
        raise ClientGone()
    consumer.result()
    return events


class ClientGone(Exception):
    """The client closed the connection; the request was aborted and its blocks freed."""


def json_error(status: int, message: str, type_: str = "invalid_request_error", code: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, type_, code or type_), status_code=status)


# ---- app ---------------------------------------------------------------------------------------
def build_app(state: WorkerState) -> Starlette:
    async def read_body(request: Request) -> dict:
        if not authorized(request, state.secret):
            raise RequestError(401, "Authentication Fails (worker secret)", "authentication_error", "invalid_api_key")
        if state.draining:
            raise RequestError(503, "Server Overloaded (draining)", "service_unavailable", "server_overloaded")
        if state.lost_ranks:
            raise RequestError(503, f"Server Overloaded ({state.lost_ranks})", "service_unavailable", "server_overloaded")
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise RequestError(400, "Request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise RequestError(400, "Request body must be a JSON object")
        if body.get("model") not in state.served_models:
            raise RequestError(400, "Model Not Exist", param="model")
        return body

    def handles_errors(handler):
        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestError as exc:
                state.metrics.rejected[str(exc.status)] += 1
                return JSONResponse(exc.body(), status_code=exc.status)
            except ClientGone:
                return Response(status_code=499)
            except EngineFailure as exc:
                state.metrics.rejected["500"] += 1
                return json_error(500, f"inference failed: {exc}", "api_error", "insufficient_system_resource")
        return wrapped

    def with_usage(chunk: dict, body: dict, gen: Generation, final: bool) -> dict:
        """Usage on the last chunk, or on every one with continuous_usage_stats; null when only include_usage."""
        opts = body.get("stream_options") or {}
        if final or opts.get("continuous_usage_stats"):
            chunk["usage"] = gen.usage.to_dict()
        elif opts.get("include_usage"):
            chunk["usage"] = None
        return chunk

    def start(request: Request, prompt_ids, params, processor, endpoint: str, model: str, object_: str):
        """The generation, and the fields each of its responses repeats (x-request-id, if sent, is the id)."""
        gen = Generation(state, prompt_ids, params, request.headers.get("x-cache-namespace", ""), processor, endpoint, model)
        rid = request.headers.get("x-request-id") or new_id("chatcmpl" if endpoint == "chat" else "cmpl")
        return gen, {"id": rid, "object": object_, "created": now(), "model": model, "system_fingerprint": SYSTEM_FINGERPRINT}

    # ---- /v1/chat/completions ----
    async def chat_completions(request: Request) -> Response:
        body = await read_body(request)
        model = body["model"]
        reasoner = model in REASONER_MODELS
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError(400, "messages must be a non-empty list", param="messages")
        tools = body.get("tools") or None
        parse_tools = bool(tools) and body.get("tool_choice") != "none"
        top_logprobs = -1 if reasoner else chat_top_logprobs(body)
        params = sampling_params(body, reasoner=reasoner, default_max_tokens=state.default_max_tokens,
                                 max_max_tokens=state.max_max_tokens, top_logprobs=top_logprobs)
        try:
            prompt_ids = state.renderer.chat_ids(messages, tools=tools, model=model)
        except (KeyError, TypeError, ValueError) as exc:
            raise RequestError(400, f"invalid messages: {exc}", param="messages") from None
        max_answer_tokens = params.max_tokens
        if reasoner:  # the chain of thought has its own budget on top of max_tokens, within the context
            try:
                state.engine.engine.check_fits(len(prompt_ids), params.max_tokens)
            except PromptTooLong as exc:
                raise RequestError(400, str(exc)) from None
            # The thinking budget is best effort: it shrinks to what the context and this worker's
            # cache can hold, rather than refusing a request whose answer fits.
            engine = state.engine.engine
            room = min(engine.max_model_len, engine.cache_capacity_tokens) - len(prompt_ids)
            params.max_tokens = min(params.max_tokens + state.max_reasoning_tokens, room)
        last = messages[-1] if isinstance(messages[-1], dict) else {}
        continues_answer = last.get("role") == "assistant" and last.get("prefix") and bool(last.get("content"))
        processor = OutputProcessor(state.tokenizer, stop=stop_list(body), reasoning=reasoner, tools=parse_tools,
                                    hidden_token_ids=state.eos_ids)
        if reasoner:
            processor.max_answer_tokens = max_answer_tokens
            if continues_answer:
                processor.reasoning.in_reasoning = False
        gen, base = start(request, prompt_ids, params, processor, "chat", model, "chat.completion")
        want_logprobs = top_logprobs >= 0

        if not body.get("stream"):
            events = await collect(request, gen)
            content = "".join(e.delta.content for e in events)
            message = {"role": "assistant", "content": content}
            if reasoner:
                message["reasoning_content"] = "".join(e.delta.reasoning for e in events)
            if processor.has_tool_calls:
                message["tool_calls"] = [c.to_message() for c in processor.tools.calls]
            lps = [lp for e in events for lp in e.logprobs]
            choice = {"index": 0, "message": message,
                      "logprobs": {"content": chat_logprobs(state.token_text, lps)} if want_logprobs else None,
                      "finish_reason": events[-1].finish_reason}
            if processor.matched_stop is not None:
                choice["stop_reason"] = processor.matched_stop
            return JSONResponse(dict(base, choices=[choice], usage=gen.usage.to_dict()), headers={"x-request-id": base["id"]})

        base["object"] = "chat.completion.chunk"

        def chunk(delta: dict, finish: str | None, logprobs=None, final=False) -> bytes:
            c = dict(base, choices=[{"index": 0, "delta": delta,
                                     "logprobs": {"content": chat_logprobs(state.token_text, logprobs)} if want_logprobs and logprobs else None,
                                     "finish_reason": finish}])
            if finish == "stop" and processor.matched_stop is not None:
                # Which stop string matched (vLLM's field): Anthropic clients get stop_sequence from it.
                c["choices"][0]["stop_reason"] = processor.matched_stop
            return sse(with_usage(c, body, gen, final))

        async def stream():
            sent_role = False
            try:
                async for e in gen.events():
                    delta = {}
                    if not sent_role:
                        delta = {"role": "assistant", "content": ""}
                        if reasoner:
                            delta["reasoning_content"] = ""
                    if e.delta.reasoning:
                        delta["reasoning_content"] = e.delta.reasoning
                    if e.delta.content:
                        delta["content"] = e.delta.content
                    if e.delta.tool_calls:
                        delta["tool_calls"] = e.delta.tool_calls
                    if not delta and e.finish_reason is None and not (want_logprobs and e.logprobs):
                        continue
                    sent_role = True
                    yield chunk(delta, e.finish_reason, e.logprobs, final=e.finish_reason is not None)
            except EngineFailure:
                gen.finish("insufficient_system_resource")
                yield chunk({}, "insufficient_system_resource", final=True)
            yield sse("[DONE]")

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"x-request-id": base["id"]})

    # ---- /v1/completions (FIM and plain completion) ----
    async def completions(request: Request) -> Response:
        body = await read_body(request)
        model = body["model"]
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise RequestError(400, "prompt must be a string", param="prompt")
        suffix = body.get("suffix")
        if suffix is not None and not isinstance(suffix, str):
            raise RequestError(400, "suffix must be a string", param="suffix")
        top_logprobs = completion_top_logprobs(body)
        params = sampling_params(body, reasoner=False, default_max_tokens=min(state.default_max_tokens, state.max_fim_tokens),
                                 max_max_tokens=state.max_fim_tokens, top_logprobs=top_logprobs)
        prompt_ids = state.renderer.fim_ids(prompt, suffix)
        processor = OutputProcessor(state.tokenizer, stop=stop_list(body), hidden_token_ids=state.eos_ids)
        gen, base = start(request, prompt_ids, params, processor, "completions", model, "text_completion")
        echo = prompt if body.get("echo") else ""
        want_logprobs = top_logprobs >= 0

        if not body.get("stream"):
            events = await collect(request, gen)
            text = echo + "".join(e.delta.content for e in events)
            lps = [lp for e in events for lp in e.logprobs]
            choice = {"index": 0, "text": text,
                      "logprobs": completion_logprobs(state.token_text, lps, len(echo)) if want_logprobs else None,
                      "finish_reason": events[-1].finish_reason}
            if processor.matched_stop is not None:
                choice["stop_reason"] = processor.matched_stop
            return JSONResponse(dict(base, choices=[choice], usage=gen.usage.to_dict()), headers={"x-request-id": base["id"]})

        async def stream():
            offset = len(echo)
            pending_echo = echo
            try:
                async for e in gen.events():
                    text = pending_echo + e.delta.content
                    if not text and e.finish_reason is None and not (want_logprobs and e.logprobs):
                        continue
                    pending_echo = ""
                    lp = completion_logprobs(state.token_text, e.logprobs, offset) if want_logprobs else None
                    offset += len(e.delta.content)
                    c = dict(base, choices=[{"index": 0, "text": text, "logprobs": lp, "finish_reason": e.finish_reason}])
                    yield sse(with_usage(c, body, gen, e.finish_reason is not None))
            except EngineFailure:
                gen.finish("insufficient_system_resource")
                yield sse(dict(base, choices=[{"index": 0, "text": "", "logprobs": None,
                                               "finish_reason": "insufficient_system_resource"}],
                               usage=gen.usage.to_dict()))
            yield sse("[DONE]")

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"x-request-id": base["id"]})

    # ---- health and metrics ----
    async def health(request: Request) -> Response:
        """503 with status "error" once an engine step has failed: the device state (a CUDA error is sticky)
        cannot be trusted again, so the gateway must stop routing here until the worker is restarted."""
        stats = state.engine.stats()
        failure = state.engine.failed
        lost = state.lost_ranks  # a tensor-parallel rank died: no step can complete any more
        status = "error" if failure is not None or lost else "draining" if state.draining else "ok"
        body = {"status": status, "models": state.served_models,
                "running": stats["running"], "waiting": stats["waiting"],
                "free_cache_blocks": stats["free_cache_blocks"],
                "total_cache_blocks": stats["total_cache_blocks"], "cache": stats["cache"]}
        if failure is not None:
            body["error"] = f"engine step failed: {type(failure).__name__}: {failure}"
        if lost:
            body["error"] = lost
        if state.ranks is not None:
            body["ranks"] = state.rank_states()
        return JSONResponse(body, status_code=503 if status == "error" else 200)

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(state.metrics.render(state.engine.stats(), state.draining, state.rank_states()),
                                 media_type="text/plain; version=0.0.4")

    async def models(request: Request) -> Response:
        if not authorized(request, state.secret):
            return json_error(401, "Authentication Fails (worker secret)", "authentication_error", "invalid_api_key")
        return JSONResponse({"object": "list", "data": [{"id": m, "object": "model", "owned_by": "deepseek"}
                                                        for m in state.served_models]})

    routes = [
        Route("/v1/chat/completions", handles_errors(chat_completions), methods=["POST"]),
        Route("/chat/completions", handles_errors(chat_completions), methods=["POST"]),
        Route("/v1/completions", handles_errors(completions), methods=["POST"]),
        Route("/completions", handles_errors(completions), methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    install_usage_log(app, state)  # GET /v1/usage: per-request records for reconciliation
    return app
