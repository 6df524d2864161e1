"""Scheduling policy: decodes first, prefill chunks within the token budget, FIFO admission."""
from gpu_worker.engine.block_manager import BlockManager
from gpu_worker.engine.scheduler import Scheduler
from gpu_worker.engine.sequence import SamplingParams, Sequence

BS = 4


def seq(rid, n):
    return Sequence(rid, list(range(1, n + 1)), SamplingParams())


def run_step(sched, batch):
    """What the engine does after a forward: advance, and append a token where one was sampled."""
    for s in batch:
        sampled = s.samples
        s.seq.num_computed_tokens += s.num_new_tokens
        if sampled:
            s.seq.append_token(7)
        sched.block_manager.register_full_blocks(s.seq)


def test_long_prompt_is_chunked_and_decodes_go_first():
    sched = Scheduler(BlockManager(64, BS), max_batch_tokens=8)
    short, long_ = seq("short", 3), seq("long", 20)
    sched.add(short)
    sched.add(long_)
    batch = sched.schedule()
    assert [(s.seq.request_id, s.num_new_tokens) for s in batch] == [("short", 3), ("long", 5)]
    assert batch[0].samples and not batch[1].samples
    run_step(sched, batch)
    for expected_chunk in (7, 7):
        batch = sched.schedule()
        # The decoding sequence gets its one token before the prefill takes the rest of the budget.
        assert [(s.seq.request_id, s.num_new_tokens) for s in batch] == [("short", 1), ("long", expected_chunk)]
        run_step(sched, batch)
    batch = sched.schedule()
    assert [(s.seq.request_id, s.num_new_tokens) for s in batch] == [("short", 1), ("long", 1)]
    assert batch[1].samples  # the last prompt chunk produced logits


def test_admission_is_fifo_and_waits_for_blocks():
    sched = Scheduler(BlockManager(4, BS), max_batch_tokens=64)
    a, b, c = seq("a", 8), seq("b", 8), seq("c", 2)
    for s in (a, b, c):
        sched.add(s)
    batch = sched.schedule()
    assert [s.seq.request_id for s in batch] == ["a", "b"]  # c waits behind b, no overtaking
    assert list(sched.waiting) == [c]
    run_step(sched, batch)
    # a and b each need a third block now; only one can have it: the newest (b) is preempted.
    batch = sched.schedule()
    assert [s.seq.request_id for s in batch] == ["a"]
    assert b.num_preemptions == 1 and sched.waiting[0] is b
    assert b.block_table == [] and sched.block_manager.num_free_blocks == 1


def test_max_num_seqs_bounds_the_running_set():
    sched = Scheduler(BlockManager(64, BS), max_batch_tokens=64, max_num_seqs=2)
    for i in range(3):
        sched.add(seq(f"s{i}", 2))
    assert len(sched.schedule()) == 2 and len(sched.waiting) == 1
