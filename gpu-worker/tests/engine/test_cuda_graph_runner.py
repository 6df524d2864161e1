"""The decode buffers' bucketing and padding, run eagerly on CPU: a padded step gives the logits of
the unpadded step and leaves every real cache block as the unpadded step leaves it."""
import random

import pytest
import torch

from gpu_worker.engine.cuda_graph_runner import batch_buckets
from gpu_worker.engine.model_runner import ModelRunner
from gpu_worker.model.attention_metadata import AttentionMetadata
from tests.model.tiny import hf_config, random_model

BLOCK = 8


@pytest.fixture(scope="module")
def model():
    return random_model(hf_config())


def test_buckets():
    assert batch_buckets(256)[:6] == [1, 2, 4, 8, 16, 32] and batch_buckets(256)[-1] == 256
    assert batch_buckets(40) == [1, 2, 4, 8, 16, 32, 40] and batch_buckets(1) == [1]


def prefilled(model, runner, lengths, seed=0):
    """Sequences of these context lengths, their latents written by an unpadded prefill."""
    r = random.Random(seed)
    free = list(range(runner.decode.pad_block))
    r.shuffle(free)
    seqs = []
    for n in lengths:
        table = [free.pop() for _ in range(-(-(n + 1) // BLOCK))]  # room for the decode token
        ids = [r.randrange(model.config.vocab_size) for _ in range(n + 1)]
        seqs.append((ids, table))
    layout = [(t, 0, len(ids) - 1) for ids, t in seqs]
    flat = [i for ids, _ in seqs for i in ids[:-1]]
    positions = [p for ids, _ in seqs for p in range(len(ids) - 1)]
    model.forward(torch.tensor(flat), torch.tensor(positions), AttentionMetadata.build(layout, BLOCK), runner.kv_cache)
    return seqs


@pytest.mark.parametrize("lengths", [[5], [1, 9, 16, 23, 7], [8] * 8, [3, 17, 30, 1, 12, 25, 6, 9, 40, 2, 11]])
def test_padded_decode_step_equals_unpadded(model, lengths):
    runner = ModelRunner(model, num_blocks=96, block_size=BLOCK, max_num_seqs=16, max_model_len=64)
    seqs = prefilled(model, runner, lengths)
    before = runner.kv_cache.clone()
    rows = [(ids[-1], len(ids) - 1, table) for ids, table in seqs]
    padded = runner.decode.run(rows)
    assert runner.decode.bucket(len(rows)) >= len(rows) and padded.shape[0] == len(rows)
    after_padded = runner.kv_cache.clone()

    runner.kv_cache.copy_(before)
    meta = AttentionMetadata.build([(t, p, 1) for _, p, t in rows], BLOCK)
    plain = model.forward(torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows]), meta,
                          runner.kv_cache)
    torch.testing.assert_close(model.compute_logits(padded), model.compute_logits(plain), rtol=1e-5, atol=1e-5)
    pad = runner.decode.pad_block
    torch.testing.assert_close(after_padded[:, :pad], runner.kv_cache[:, :pad], rtol=0, atol=0)
    # the buffers are reused: a second, smaller step is not disturbed by the first one's rows
    again = runner.decode.run(rows[:1])
    meta1 = AttentionMetadata.build([(rows[0][2], rows[0][1], 1)], BLOCK)
    one = model.forward(torch.tensor([rows[0][0]]), torch.tensor([rows[0][1]]), meta1, runner.kv_cache)
    torch.testing.assert_close(again, one, rtol=1e-5, atol=1e-5)


def test_larger_than_the_largest_bucket_runs_eagerly(model):
    runner = ModelRunner(model, num_blocks=8, block_size=BLOCK, max_num_seqs=2, max_model_len=32)
    assert runner.decode.buckets == [1, 2] and runner.decode.max_bs == 2
    assert runner.kv_cache.shape[1] == 9  # the pad block follows the 8 the block manager hands out


def test_tables_written_incrementally_follow_growth_moves_and_rewrites(model):
    """Rows keyed by sequence get only their new table entries; a row that changes hands, or a key
    that changes (a preempted sequence's table is rewritten), gets the whole table again."""
    runner = ModelRunner(model, num_blocks=96, block_size=BLOCK, max_num_seqs=4, max_model_len=64)
    seqs = prefilled(model, runner, [15, 22, 7])
    decode = runner.decode

    def step(rows):
        hidden = decode.run(rows)
        meta = AttentionMetadata.build([(t, p, 1) for _, p, t, *_ in rows], BLOCK)
        plain = model.forward(torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows]), meta,
                              runner.kv_cache)
        torch.testing.assert_close(hidden, plain, rtol=1e-5, atol=1e-5)
        for i, (_, pos, table, *_) in enumerate(rows):  # what a kernel reads of each table is right
            used = pos // BLOCK + 1
            assert decode.host_inputs["block_tables"][i, :used].tolist() == table[:used]

    (a, ta), (b, tb), (c, tc) = seqs
    step([(a[-1], len(a) - 1, ta, ("a", 0)), (b[-1], len(b) - 1, tb, ("b", 0))])
    ta.append(90)  # a grows into a new block
    step([(a[-1], 16, ta, ("a", 0)), (b[-1], len(b) - 1, tb, ("b", 0))])
    # rows change hands; a's table is rewritten after a preemption (same length, other blocks)
    step([(c[-1], len(c) - 1, tc, ("c", 0)), (a[-1], 16, [91, 92, 93], ("a", 1))])
