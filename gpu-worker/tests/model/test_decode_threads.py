"""decode_threads.ThreadChoice: threads for steps of many sequences, one thread for a while after a step
whose calling thread waited on another that the OS had not run."""

import pytest
import torch

from gpu_worker.model import decode_threads
from gpu_worker.model.decode_threads import CHUNK_TOKENS, MAX_BACKOFF, THREADED_TOKENS, ThreadChoice

MANY = THREADED_TOKENS
CHUNK_NS = 100_000
CLEAN = (4 * CHUNK_NS, CHUNK_NS // 2, 4)  # 4 chunks, then half a chunk's wait: the threads kept pace
LATE = (4 * CHUNK_NS, 20 * CHUNK_NS, 4)  # then a wait of 20 chunks: another thread was not running


@pytest.fixture(autouse=True)
def two_threads(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)


def test_steps_of_many_sequences_take_torchs_threads():
    choice = ThreadChoice()
    assert THREADED_TOKENS >= 2 * CHUNK_TOKENS  # at least two chunks to share
    assert choice.threads(MANY - 1) == 1 and choice.threads(1) == 1
    assert choice.threads(MANY) == 2 and choice.threads(32) == 2


def test_one_torch_thread_means_one_thread(monkeypatch):
    monkeypatch.setattr(decode_threads.torch, "get_num_threads", lambda: 1)
    assert ThreadChoice().threads(32) == 1


def test_a_late_thread_means_one_thread_for_a_while_doubling():
    choice = ThreadChoice()
    expected = 1
    for _ in range(8):
        choice.record(*LATE)
        # small steps meanwhile neither thread nor count
        assert [choice.threads(1) for _ in range(3)] == [1, 1, 1]
        assert [choice.threads(MANY) for _ in range(expected)] == [1] * expected
        assert choice.threads(MANY) == 2  # then a try
        expected = min(2 * expected, MAX_BACKOFF)
    assert expected == MAX_BACKOFF


def test_a_step_whose_threads_kept_pace_resets_the_backoff():
    choice = ThreadChoice()
    for _ in range(3):
        choice.record(*LATE)
    while choice.threads(MANY) == 1:
        pass
    choice.record(*CLEAN)
    assert choice.threads(MANY) == 2
    choice.record(*LATE)
    assert [choice.threads(MANY) for _ in range(2)] == [1, 2]


def test_a_wait_of_less_than_a_chunk_is_not_a_late_thread():
    choice = ThreadChoice()
    choice.record(4 * CHUNK_NS, CHUNK_NS - 1, 4)
    choice.record(0, 10 * CHUNK_NS, 0)  # the other threads ran every chunk: nothing to say about them
    assert choice.threads(MANY) == 2
