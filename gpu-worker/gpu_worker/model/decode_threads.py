"""How many threads a compiled decode step (compiled_decode.py) runs on.

A step of many sequences splits into chunks of CHUNK_TOKENS sequences, each a complete step of its own
sequences, claimed one at a time by the calling thread and torch's OpenMP threads (decode_kernel.cpp,
run_chunks). With the other core free that makes the forward of 32 sequences ~1.7x faster on 2 cores. It
runs on torch's own threads, which are usually still spinning from the last torch op (the lm_head) and
start at once; a thread of our own had to share its core with that spinning thread and made steps slower.

But when another process holds a core, the OS may not run the thread there for milliseconds, and the
calling thread, out of chunks, waits for it at the end of the step (with a busy loop on the other core:
~6 ms median instead of ~2.5 ms on one thread; torch ops measured 15-25 ms instead of 0.9 ms the same way,
see small_decode.one_thread). The kernel reports how long the calling thread waited; a wait longer than one
of its own chunks means that happened, and the next threaded-sized steps run on the calling thread alone,
for a number of steps that doubles (up to MAX_BACKOFF) while it keeps happening and resets after a
threaded step without such a wait. On a busy machine that costs about one slow step in MAX_BACKOFF; on a
free one, nothing.
"""

from __future__ import annotations

import torch

# Steps of at least this many sequences may run on several threads; smaller ones always run on the
# calling thread (below two chunks there is nothing to share).
THREADED_TOKENS = 16
# Sequences per chunk: small enough that a late thread costs the calling thread little and chunks
# balance across threads, large enough that each expert's weights are read for several tokens at once.
CHUNK_TOKENS = 8
MAX_BACKOFF = 64


class ThreadChoice:
    """Threads for the next step (`threads`), and what a threaded step's timing says (`record`)."""

    def __init__(self):
        self.skip = 0  # threaded-sized steps left to run on one thread
        self.backoff = 0

    def threads(self, batch: int) -> int:
        if batch < THREADED_TOKENS:
            return 1
        available = torch.get_num_threads()
        if available < 2:
            return 1
        if self.skip:
            self.skip -= 1
            return 1
        return available

    def record(self, work_ns: int, wait_ns: int, own_chunks: int) -> None:
        """After a threaded step: the calling thread ran `own_chunks` chunks in `work_ns`, then waited
        `wait_ns` for the other threads."""
        if own_chunks and wait_ns > work_ns / own_chunks:
            self.backoff = min(2 * self.backoff or 1, MAX_BACKOFF)
            self.skip = self.backoff
        else:
            self.backoff = 0
