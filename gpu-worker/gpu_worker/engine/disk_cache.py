"""Disk tier of the prefix cache: one file per block key, bounded by bytes, least recently used
evicted first (mtime is the clock, so the order survives a restart). Files are written under a
temporary name and renamed, so a crash never leaves half a block; writes run on a background thread
so eviction never waits for the disk (a queued block is served from memory).
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections import OrderedDict

import torch
from safetensors.torch import load_file, save_file

SUFFIX = ".kvblock"
log = logging.getLogger("gpu_worker.engine.disk_cache")


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


class DiskCache:
    def __init__(self, directory: str, max_bytes: int, max_queued_writes: int = 256):
        self.directory = directory
        self.max_bytes = max_bytes
        os.makedirs(directory, exist_ok=True)
        self._lock = threading.Lock()
        self._index: OrderedDict[str, int] = OrderedDict()  # key hex -> bytes, oldest first
        self._queued: dict[str, torch.Tensor] = {}
        self._writes: queue.Queue[str] = queue.Queue(maxsize=max_queued_writes)
        self.writes = 0
        for entry in sorted(os.scandir(directory), key=lambda e: e.stat().st_mtime_ns):
            if entry.name.endswith(SUFFIX):
                self._index[entry.name[: -len(SUFFIX)]] = entry.stat().st_size
            elif entry.name.endswith(".tmp"):  # a write cut short
                os.unlink(entry.path)
        self.total_bytes = sum(self._index.values())
        self._evict_over_budget()
        threading.Thread(target=self._write_loop, name="disk-cache-writer", daemon=True).start()

    def _path(self, key: str) -> str:
        return os.path.join(self.directory, key + SUFFIX)

    def __contains__(self, key: bytes) -> bool:
        return key.hex() in self._index or key.hex() in self._queued

    def __len__(self) -> int:
        return len(self._index)

    def save(self, key: bytes, latents: torch.Tensor) -> None:
        """Queue one block's latents for writing, copied to the host here so the device block can
        be reused at once."""
        hex_key = key.hex()
        with self._lock:
            if hex_key in self._index:
                self._index.move_to_end(hex_key)
                return
            if hex_key in self._queued:
                return
            self._queued[hex_key] = latents.detach().to("cpu").contiguous()
        self._writes.put(hex_key)  # blocks when the disk falls far behind: back-pressure

    def flush(self) -> None:
        """Wait until every queued block is on disk."""
        self._writes.join()

    def _write_loop(self) -> None:
        while True:
            hex_key = self._writes.get()
            try:
                self._write(hex_key, self._queued[hex_key])
            finally:
                with self._lock:
                    self._queued.pop(hex_key, None)
                self._writes.task_done()

    def _write(self, hex_key: str, latents: torch.Tensor) -> None:
        path = self._path(hex_key)
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            save_file({"latents": latents}, tmp)
            os.replace(tmp, path)
            size = os.path.getsize(path)
        except OSError as exc:  # disk full or gone: the block is simply not kept
            log.warning("disk cache write failed: %s", exc)
            _unlink(tmp)
            return
        with self._lock:
            self._index[hex_key] = size
            self.total_bytes += size
            self.writes += 1
            self._evict_over_budget()

    def load(self, key: bytes) -> torch.Tensor | None:
        """The stored latents, or None when absent or unreadable."""
        hex_key = key.hex()
        with self._lock:
            latents = self._queued.get(hex_key)
            if latents is None and hex_key not in self._index:
                return None
        if latents is None:
            try:
                latents = load_file(self._path(hex_key))["latents"]
            except Exception:  # unreadable: forget it
                with self._lock:
                    self.total_bytes -= self._index.pop(hex_key, 0)
                _unlink(self._path(hex_key))
                return None
            with contextlib.suppress(OSError):
                os.utime(self._path(hex_key))
        with self._lock:
            if hex_key in self._index:
                self._index.move_to_end(hex_key)
        return latents

    def _evict_over_budget(self) -> None:
        while self.total_bytes > self.max_bytes and self._index:
            hex_key, size = self._index.popitem(last=False)
            self.total_bytes -= size
            _unlink(self._path(hex_key))
