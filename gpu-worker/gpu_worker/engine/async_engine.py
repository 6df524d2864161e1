"""The engine on its own thread. Requests and cancellations wait in a locked inbox until the next
step, so only that thread touches the engine; tokens go back on a per-request asyncio.Queue (None:
failed), a step's outputs in one event-loop wake-up, where detokenisation and SSE encoding happen.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass

import torch

from .engine import LLMEngine, StepOutput
from .sequence import SamplingParams

log = logging.getLogger("gpu_worker.engine")


@dataclass
class RequestHandle:
    request_id: str
    queue: asyncio.Queue
    loop: asyncio.AbstractEventLoop
    error: BaseException | None = None

    def deliver(self, item) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.deliver(None)


class AsyncEngine:
    def __init__(self, engine: LLMEngine):
        self.engine = engine
        self._cv = threading.Condition()
        self._adds: list[tuple[RequestHandle, list[int], SamplingParams, str]] = []
        self._aborts: list[tuple[str, str]] = []
        self._handles: dict[str, RequestHandle] = {}
        self._stop = False
        self.num_pending = 0
        self.failed: BaseException | None = None
        self._num_threads = torch.get_num_threads()  # a new native thread would not inherit it
        self._thread = threading.Thread(target=self._loop, name="engine", daemon=True)
        self._thread.start()

    # ---- called from the event loop
    def submit(self, request_id: str, prompt_ids: list[int], params: SamplingParams,
               namespace: str) -> RequestHandle:
        self.engine.check_fits(len(prompt_ids), params.max_tokens)
        handle = RequestHandle(request_id, asyncio.Queue(), asyncio.get_running_loop())
        with self._cv:
            self._adds.append((handle, prompt_ids, params, namespace))
            self.num_pending += 1
            self._cv.notify()
        return handle

    def abort(self, request_id: str, reason: str = "abort") -> None:
        with self._cv:
            self._aborts.append((request_id, reason))
            self._cv.notify()

    def stats(self) -> dict:
        stats = self.engine.stats()
        stats["waiting"] += self.num_pending
        return stats

    def shutdown(self) -> None:
        if not self._thread.is_alive():
            return
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout=30)
        self.engine.shutdown()

    # ---- the engine thread
    def _apply_inbox(self) -> None:
        with self._cv:
            scheduler = self.engine.scheduler
            while not (self._adds or self._aborts or scheduler.has_work() or self._stop):
                self._cv.wait()
            adds, self._adds = self._adds, []
            aborts, self._aborts = self._aborts, []
            self.num_pending -= len(adds)
        for handle, prompt_ids, params, namespace in adds:
            try:
                self.engine.add_request(handle.request_id, prompt_ids, params, namespace)
                self._handles[handle.request_id] = handle
            except Exception as exc:  # duplicate id, too long: the caller reports it
                handle.fail(exc)
        for request_id, reason in aborts:
            seq = self.engine.abort(request_id, reason)
            handle = self._handles.pop(request_id, None)
            if handle is not None and seq is not None:
                handle.deliver(StepOutput(seq, [], [], True))

    def _loop(self) -> None:
        torch.set_num_threads(self._num_threads)
        while True:
            self._apply_inbox()
            if self._stop:
                return
            try:
                outputs = self.engine.step()
            except BaseException as exc:  # the model failed: end every request with an error
                log.exception("engine step failed")
                self.failed = exc
                for request_id, handle in self._handles.items():
                    self.engine.abort(request_id, "insufficient_system_resource")
                    handle.fail(exc)
                self._handles.clear()
                continue
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue, StepOutput]]] = {}
            for out in outputs:
                handle = self._handles.get(out.seq.request_id)
                if handle is None:
                    continue
                if out.finished:
                    del self._handles[out.seq.request_id]
                by_loop.setdefault(handle.loop, []).append((handle.queue, out))
            for loop, items in by_loop.items():
                loop.call_soon_threadsafe(_put_all, items)


def _put_all(items: list[tuple[asyncio.Queue, StepOutput]]) -> None:
    for queue, out in items:
        queue.put_nowait(out)
