"""Disk tier of the prefix cache: evicted blocks' latents, one file per block key.

Bounded by bytes with least-recently-used eviction (file mtime is the clock, so the order
survives a restart). Files are written to a temporary name and renamed, so a crash never
leaves a half-written block that a later worker would load.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict

import torch
from safetensors.torch import load_file, save_file

SUFFIX = ".kvblock"
log = logging.getLogger("gpu_worker.engine.disk_cache")


class DiskCache:
    def __init__(self, directory: str, max_bytes: int):
        self.directory = directory
        self.max_bytes = max_bytes
        os.makedirs(directory, exist_ok=True)
        self._lock = threading.Lock()
        self._index: OrderedDict[str, int] = OrderedDict()  # key hex -> bytes, oldest first
        self.total_bytes = 0
        self.hits = 0
        self.writes = 0
        entries = []
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            if name.endswith(SUFFIX):
                st = os.stat(path)
                entries.append((st.st_mtime_ns, name[: -len(SUFFIX)], st.st_size))
            elif name.endswith(".tmp"):
                os.unlink(path)
        for _, key, size in sorted(entries):
            self._index[key] = size
            self.total_bytes += size
        self._evict_over_budget()

    def _path(self, key: str) -> str:
        return os.path.join(self.directory, key + SUFFIX)

    def __contains__(self, key: bytes) -> bool:
        return key.hex() in self._index

    def __len__(self) -> int:
        return len(self._index)

    def save(self, key: bytes, latents: torch.Tensor, token_ids: list[int]) -> None:
        """latents: [num_layers, block_size, latent_dim] of one block."""
        hex_key = key.hex()
        with self._lock:
            if hex_key in self._index:
                self._index.move_to_end(hex_key)
                return
        path = self._path(hex_key)
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            save_file({"latents": latents.detach().to("cpu").contiguous(),
                       "token_ids": torch.tensor(token_ids, dtype=torch.int64)}, tmp)
            os.replace(tmp, path)
            size = os.path.getsize(path)
        except OSError as exc:  # disk full or gone: the block is simply not kept
            log.warning("disk cache write failed: %s", exc)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return
        with self._lock:
            self._index[hex_key] = size
            self.total_bytes += size
            self.writes += 1
            self._evict_over_budget()

    def load(self, key: bytes, token_ids: list[int]) -> torch.Tensor | None:
        """The stored latents, or None when absent, unreadable or for other tokens."""
        hex_key = key.hex()
        with self._lock:
            if hex_key not in self._index:
                return None
        path = self._path(hex_key)
        try:
            data = load_file(path)
        except Exception:
            self._drop(hex_key)
            return None
        if data["token_ids"].tolist() != list(token_ids):
            return None
        with self._lock:
            if hex_key in self._index:
                self._index.move_to_end(hex_key)
            self.hits += 1
        try:
            os.utime(path)
        except OSError:
            pass
        return data["latents"]

    def _drop(self, hex_key: str) -> None:
        with self._lock:
            size = self._index.pop(hex_key, None)
            if size is not None:
                self.total_bytes -= size
        try:
            os.unlink(self._path(hex_key))
        except OSError:
            pass

    def _evict_over_budget(self) -> None:
        while self.total_bytes > self.max_bytes and self._index:
            hex_key, size = self._index.popitem(last=False)
            self.total_bytes -= size
            try:
                os.unlink(self._path(hex_key))
            except OSError:
                pass
