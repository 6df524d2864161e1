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
    assert batch_buckets(40) == [1, 2, 4, 8, 16, 32, 40] and batch_buckets(2) == [1, 2]
    assert batch_buckets(1) == [1]


def prefilled(model, runner, lengths, seed=0):
    """Decode rows (token id, position, block table) of sequences of these context lengths, their
    latents written by an unpadded prefill."""
    r = random.Random(seed)
    free = list(range(runner.decode.pad_block))
    r.shuffle(free)
    seqs = []
    for n in lengths:
        table = [free.pop() for _ in range(-(-(n + 1) // BLOCK))]  # room for the decode token
        seqs.append(([r.randrange(model.config.vocab_size) for _ in range(n + 1)], table))
    meta = AttentionMetadata.build([(t, 0, len(ids) - 1) for ids, t in seqs], BLOCK)
    flat = [i for ids, _ in seqs for i in ids[:-1]]
    positions = [p for ids, _ in seqs for p in range(len(ids) - 1)]
    model.forward(torch.tensor(flat), torch.tensor(positions), meta, runner.kv_cache)
    return [(ids[-1], len(ids) - 1, table) for ids, table in seqs]


def unpadded(model, runner, rows):
    meta = AttentionMetadata.build([(t, p, 1) for _, p, t, *_ in rows], BLOCK)
    ids, positions = torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])
    return model.forward(ids, positions, meta, runner.kv_cache)


@pytest.mark.parametrize("lengths", [[5], [1, 9, 16, 23, 7], [8] * 8, [3, 17, 30, 1, 12, 25, 6, 9, 40, 2, 11]])
def test_padded_decode_step_equals_unpadded(model, lengths):
    runner = ModelRunner(model, num_blocks=96, block_size=BLOCK, max_num_seqs=16, max_model_len=64)
    assert runner.kv_cache.shape[1] == 97  # the pad block follows the 96 others
    rows = prefilled(model, runner, lengths)
    before = runner.kv_cache.clone()
    padded = runner.decode.run(rows)
    assert runner.decode.bucket(len(rows)) >= len(rows) and padded.shape[0] == len(rows)
    after_padded = runner.kv_cache.clone()
    runner.kv_cache.copy_(before)
    plain = unpadded(model, runner, rows)
    torch.testing.assert_close(model.compute_logits(padded), model.compute_logits(plain), rtol=1e-5, atol=1e-5)
    pad = runner.decode.pad_block
    torch.testing.assert_close(after_padded[:, :pad], runner.kv_cache[:, :pad], rtol=0, atol=0)
    # the buffers are reused: a second, smaller step is not disturbed by the first one's rows
    torch.testing.assert_close(runner.decode.run(rows[:1]), unpadded(model, runner, rows[:1]),
                               rtol=1e-5, atol=1e-5)


def test_tables_written_incrementally_follow_growth_moves_and_rewrites(model):
    """Rows keyed by sequence get only their new table entries; a row that changes hands, or a key
    that changes (a preempted sequence's table is rewritten), gets the whole table again."""
    runner = ModelRunner(model, num_blocks=96, block_size=BLOCK, max_num_seqs=4, max_model_len=64)
    decode = runner.decode

    def step(rows):
        hidden = decode.run(rows)
        torch.testing.assert_close(hidden, unpadded(model, runner, rows), rtol=1e-5, atol=1e-5)
        for i, (_, pos, table, _) in enumerate(rows):  # what a kernel reads of each table is right
            used = pos // BLOCK + 1
            assert decode.host_inputs["block_tables"][i, :used].tolist() == table[:used]

    a, b, c = prefilled(model, runner, [15, 22, 7])
    step([(*a, ("a", 0)), (*b, ("b", 0))])
    a[2].append(90)  # a grows into a new block
    step([(a[0], 16, a[2], ("a", 0)), (*b, ("b", 0))])
    # rows change hands; a's table is rewritten after a preemption (same length, other blocks)
    step([(*c, ("c", 0)), (a[0], 16, [91, 92, 93], ("a", 1))])
