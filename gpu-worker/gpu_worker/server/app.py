"""Starlette app: the gateway protocol of docs/architecture.md over the async engine."""
from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from gpu_worker.engine.async_engine import AsyncEngine
from gpu_worker.engine.engine import PromptTooLong
from gpu_worker.prompt.chat_format import EOS, REASONER_MODEL

from .detokenizer import TokenText
from .metrics import Metrics
from .output import OutputProcessor
from .protocol import (RequestError, Usage, authorized, chat_logprobs, checked, completion_logprobs,
                       sampling_params, sse, stop_list, unauthorized)
from .usage_log import usage_endpoint

SYSTEM_FINGERPRINT = "fp_gpu_worker"
CHAT_MAX_TOKENS = (4096, 8192)  # (default, largest) max_tokens
FIM_MAX_TOKENS = (4096, 4096)


@dataclass
class WorkerState:
    engine: AsyncEngine
    renderer: object                 # gpu_worker.prompt.renderer.PromptRenderer
    served_models: list[str]
    secret: str | None = None
    max_reasoning_tokens: int = 32768
    metrics: Metrics = field(default_factory=Metrics)
    draining: bool = False
    ranks: object | None = None      # gpu_worker.parallel.launcher.Ranks on rank 0 of a tensor-parallel worker

    @property
    def lost_ranks(self) -> str | None:
        return self.ranks.failure if self.ranks is not None else None

    def rank_states(self) -> list[dict] | None:
        if self.ranks is None:
            return None
        device = str(self.engine.engine.device)
        return self.ranks.snapshot({"state": "serving", "pid": os.getpid(), "device": device})

    def __post_init__(self):
        self.tokenizer = self.renderer.tokenizer
        self.token_text = TokenText(self.tokenizer)
        self.eos_ids = frozenset({self.tokenizer.token_to_id(EOS)} - {None})


class Generation:
    """One request's run through the engine, for both endpoints and both modes."""

    def __init__(self, state: WorkerState, request: Request, prompt_ids: list[int], params,
                 processor: OutputProcessor, endpoint: str, model: str):
        self.state, self.processor, self.endpoint, self.model = state, processor, endpoint, model
        # The gateway's id names the response (its retries reuse it) and the usage record.
        self.request_id = request.headers.get("x-request-id")
        prefix = "chatcmpl" if endpoint == "chat" else "cmpl"
        self.id = self.request_id or f"{prefix}-{uuid.uuid4()}"
        self.engine_id = uuid.uuid4().hex
        self.usage = Usage(prompt_tokens=len(prompt_ids))
        self.finished = False
        self.waiting_since: float | None = time.monotonic()  # until the first token
        namespace = request.headers.get("x-cache-namespace", "")
        self.handle = state.engine.submit(self.engine_id, prompt_ids, params, namespace)

    async def events(self):
        """(OutputDelta, logprobs, finish_reason or None) as the engine delivers tokens."""
        proc, metrics = self.processor, self.state.metrics
        try:
            while True:
                out = await self.handle.queue.get()
                if out is None:  # the engine failed and dropped the request
                    self.finish("insufficient_system_resource")
                    raise RequestError(500, f"inference failed: {self.handle.error}", "api_error",
                                       "insufficient_system_resource")
                if self.waiting_since is not None and out.new_token_ids:
                    metrics.ttft_sum += time.monotonic() - self.waiting_since
                    metrics.ttft_count += 1
                    self.waiting_since = None
                delta = proc.push(out.new_token_ids)
                logprobs = out.new_logprobs[: len(delta.token_ids)]
                self.usage.cached_tokens = out.seq.num_cached_prompt_tokens or 0
                self.usage.completion_tokens = proc.completion_tokens
                self.usage.reasoning_tokens = proc.reasoning_tokens
                if not (out.finished or proc.ended_early):
                    yield delta, logprobs, None
                    continue
                if not out.finished:
                    self.state.engine.abort(self.engine_id, "stop")
                proc.finish(delta)
                reason = ("stop" if proc.stop.stopped else "length" if proc.answer_limit_reached
                          else out.seq.finish_reason or "stop")
                if reason in ("stop", "abort"):
                    reason = "tool_calls" if proc.has_tool_calls else "stop"
                self.finish(reason)
                yield delta, logprobs, reason
                return
        finally:
            if not self.finished:  # client went away, or the consumer stopped early
                self.state.engine.abort(self.engine_id, "abort")
                self.finish("abort")

    def finish(self, reason: str) -> None:
        if not self.finished:
            self.finished = True
            self.state.metrics.record(self.request_id, self.endpoint, self.model, reason,
                                      self.usage)


async def collect(request: Request, gen: Generation) -> list[tuple] | None:
    """Run a non-streaming generation to the end, or abort it when the client leaves (None)."""
    async def consume():
        return [event async for event in gen.events()]

    async def wait_for_disconnect() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    consumer = asyncio.ensure_future(consume())
    watcher = asyncio.ensure_future(wait_for_disconnect())
    try:
        done, _ = await asyncio.wait({consumer, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not consumer.done():
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
    return consumer.result() if consumer in done else None


def build_app(state: WorkerState) -> Starlette:
    async def read_body(request: Request) -> dict:
        if not authorized(request, state.secret):
            raise unauthorized()
        overloaded = "draining" if state.draining else state.lost_ranks
        if overloaded:
            raise RequestError(503, f"Server Overloaded ({overloaded})", "service_unavailable",
                               "server_overloaded")
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
                error = exc
            except PromptTooLong as exc:
                error = RequestError(400, str(exc))
            state.metrics.rejected[str(error.status)] += 1
            return error.response()
        return wrapped

    async def respond(request: Request, body: dict, gen: Generation, whole, piece) -> Response:
        """JSON response or SSE stream. whole(content, reasoning, logprobs) gives a response's
        choice fields, piece(delta, logprobs, finish_reason) a chunk's choice or None."""
        chat = gen.endpoint == "chat"
        base = {"id": gen.id, "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()), "model": gen.model,
                "system_fingerprint": SYSTEM_FINGERPRINT}
        headers = {"x-request-id": gen.id}
        stop = gen.processor.stop
        if not body.get("stream"):
            events = await collect(request, gen)
            if events is None:  # the client left; the request was aborted and its blocks freed
                return Response(status_code=499)
            fields = whole("".join(d.content for d, _, _ in events),
                           "".join(d.reasoning for d, _, _ in events),
                           [lp for _, lps, _ in events for lp in lps])
            choice = {"index": 0, **fields, "finish_reason": events[-1][2]}
            if stop.matched is not None:
                choice["stop_reason"] = stop.matched
            return JSONResponse(dict(base, choices=[choice], usage=gen.usage.to_dict()),
                                headers=headers)
        if chat:
            base["object"] = "chat.completion.chunk"
        options = body.get("stream_options") or {}

        def chunk(choice: dict, final: bool) -> bytes:
            c = dict(base, choices=[choice])
            if final or options.get("continuous_usage_stats"):
                c["usage"] = gen.usage.to_dict()
            elif options.get("include_usage"):
                c["usage"] = None
            return sse(c)

        async def stream():
            try:
                async for delta, logprobs, finish in gen.events():
                    choice = piece(delta, logprobs, finish)
                    if choice is not None:
                        yield chunk(choice, final=finish is not None)
            except RequestError:  # the engine failed
                failed = {"index": 0, "delta": {}} if chat else {"index": 0, "text": ""}
                reason = "insufficient_system_resource"
                yield chunk(dict(failed, logprobs=None, finish_reason=reason), final=True)
            yield sse("[DONE]")

        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    async def chat_completions(request: Request) -> Response:
        body = await read_body(request)
        model = body["model"]
        reasoner = model == REASONER_MODEL
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError(400, "messages must be a non-empty list", param="messages")
        tools = body.get("tools") or None
        top_logprobs = -1  # off, else how many alternatives per token
        if body.get("logprobs") and not reasoner:
            top_logprobs = checked(body.get("top_logprobs") or 0, "top_logprobs", 0, 20, int)
        want_logprobs = top_logprobs >= 0
        params = sampling_params(body, reasoner, CHAT_MAX_TOKENS, top_logprobs)
        try:
            prompt_ids = state.renderer.chat_ids(messages, tools=tools, model=model)
        except (KeyError, TypeError, ValueError) as exc:
            raise RequestError(400, f"invalid messages: {exc}", param="messages") from None
        max_answer_tokens = params.max_tokens
        if reasoner:  # the chain of thought has its own budget on top of max_tokens, within the context
            engine = state.engine.engine
            engine.check_fits(len(prompt_ids), params.max_tokens)
            # The thinking budget is best effort: it shrinks to what the context and this worker's
            # cache can hold, rather than refusing a request whose answer fits.
            room = min(engine.max_model_len, engine.cache_capacity_tokens) - len(prompt_ids)
            params.max_tokens = min(params.max_tokens + state.max_reasoning_tokens, room)
        processor = OutputProcessor(state.tokenizer, stop=stop_list(body), reasoning=reasoner,
                                    tools=bool(tools) and body.get("tool_choice") != "none",
                                    hidden_token_ids=state.eos_ids)
        if reasoner:
            processor.max_answer_tokens = max_answer_tokens
            last = messages[-1]
            if last.get("role") == "assistant" and last.get("prefix") and last.get("content"):
                processor.reasoning.in_reasoning = False  # the answer is being continued
        gen = Generation(state, request, prompt_ids, params, processor, "chat", model)

        def whole(content: str, reasoning: str, logprobs: list) -> dict:
            message = {"role": "assistant", "content": content}
            if reasoner:
                message["reasoning_content"] = reasoning
            if processor.has_tool_calls:
                message["tool_calls"] = processor.tools.calls
            lp = chat_logprobs(state.token_text, logprobs) if want_logprobs else None
            return {"message": message, "logprobs": lp}

        first = {"role": "assistant", "content": ""}  # the first chunk's delta starts with these
        if reasoner:
            first["reasoning_content"] = ""

        def piece(delta, logprobs, finish):
            nonlocal first
            fields = dict(first)
            for key, value in (("reasoning_content", delta.reasoning), ("content", delta.content),
                               ("tool_calls", delta.tool_calls)):
                if value:
                    fields[key] = value
            if not fields and finish is None and not (want_logprobs and logprobs):
                return None
            first = {}
            lp = chat_logprobs(state.token_text, logprobs) if want_logprobs and logprobs else None
            choice = {"index": 0, "delta": fields, "logprobs": lp, "finish_reason": finish}
            if finish == "stop" and processor.stop.matched is not None:
                # Which stop string matched (vLLM's field): Anthropic's stop_sequence comes from it.
                choice["stop_reason"] = processor.stop.matched
            return choice

        return await respond(request, body, gen, whole, piece)

    async def completions(request: Request) -> Response:
        """FIM and plain completion."""
        body = await read_body(request)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise RequestError(400, "prompt must be a string", param="prompt")
        suffix = body.get("suffix")
        if suffix is not None and not isinstance(suffix, str):
            raise RequestError(400, "suffix must be a string", param="suffix")
        n = body.get("logprobs")  # alternatives per token; true: none
        top_logprobs = (-1 if n is None or n is False
                        else 0 if n is True else checked(n, "logprobs", 0, 20, int))
        want_logprobs = top_logprobs >= 0
        params = sampling_params(body, False, FIM_MAX_TOKENS, top_logprobs)
        processor = OutputProcessor(state.tokenizer, stop=stop_list(body), hidden_token_ids=state.eos_ids)
        gen = Generation(state, request, state.renderer.fim_ids(prompt, suffix), params, processor,
                         "completions", body["model"])
        echo = prompt if body.get("echo") else ""
        offset, unsent_echo = len(echo), echo  # where the next streamed text starts in the choice's

        def whole(content: str, reasoning: str, logprobs: list) -> dict:
            return {"text": echo + content, "logprobs": completion_logprobs(
                state.token_text, logprobs, len(echo)) if want_logprobs else None}

        def piece(delta, logprobs, finish):
            nonlocal offset, unsent_echo
            text = unsent_echo + delta.content
            if not text and finish is None and not (want_logprobs and logprobs):
                return None
            unsent_echo = ""
            lp = completion_logprobs(state.token_text, logprobs, offset) if want_logprobs else None
            offset += len(delta.content)
            return {"index": 0, "text": text, "logprobs": lp, "finish_reason": finish}

        return await respond(request, body, gen, whole, piece)

    async def health(request: Request) -> Response:
        """503 "error" once an engine step failed (a CUDA error is sticky) or a rank died: the
        gateway must stop routing here until the worker restarts."""
        failure = state.engine.failed
        lost = state.lost_ranks
        status = "error" if failure is not None or lost else "draining" if state.draining else "ok"
        # running, waiting, free_cache_blocks, total_cache_blocks, cache
        body = {"status": status, "models": state.served_models, **state.engine.stats()}
        if failure is not None:
            body["error"] = f"engine step failed: {type(failure).__name__}: {failure}"
        if lost:
            body["error"] = lost
        if state.ranks is not None:
            body["ranks"] = state.rank_states()
        return JSONResponse(body, status_code=503 if status == "error" else 200)

    async def metrics(request: Request) -> Response:
        text = state.metrics.render(state.engine.stats(), state.draining, state.rank_states())
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    async def models(request: Request) -> Response:
        if not authorized(request, state.secret):
            return unauthorized().response()
        return JSONResponse({"object": "list", "data": [
            {"id": m, "object": "model", "owned_by": "deepseek"} for m in state.served_models]})

    generating = (("/chat/completions", chat_completions), ("/completions", completions))
    routes = [Route(prefix + path, handles_errors(handler), methods=["POST"])
              for prefix in ("/v1", "") for path, handler in generating]
    return Starlette(routes=routes + [
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        # per-request records for reconciliation
        Route("/v1/usage", usage_endpoint(state.metrics.usage_log, state.secret), methods=["GET"]),
    ])
