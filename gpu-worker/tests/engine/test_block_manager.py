from gpu_worker.engine.block_manager import BlockManager
from gpu_worker.engine.sequence import SamplingParams, Sequence

BS = 4


def seq(tokens, ns="acct-a", rid="r"):
    return Sequence(rid, tokens, SamplingParams(), namespace=ns)


def admit(bm, s, then_free=False):
    reused = bm.allocate_prefix(s, bm.match_prefix(s))
    assert bm.ensure_capacity(s, len(s))
    s.num_computed_tokens = len(s)
    bm.register_full_blocks(s)
    if then_free:
        bm.free(s)
    return reused


def test_hash_chain_depends_on_all_previous_tokens_the_namespace_and_the_salt():
    bm = BlockManager(4, BS)
    a = bm.hashes(seq([1, 2, 3, 4, 5, 6, 7, 8], ns="x"))
    b = bm.hashes(seq([9, 2, 3, 4, 5, 6, 7, 8], ns="x"))
    c = bm.hashes(seq([1, 2, 3, 4, 5, 6, 7, 8], ns="y"))
    d = BlockManager(4, BS, salt="other weights").hashes(seq([1, 2, 3, 4, 5, 6, 7, 8], ns="x"))
    assert len(a) == 2 and a[1] != b[1] and a[0] != c[0] and a[1] != c[1] and a[0] != d[0]
    assert bm.hashes(seq([1, 2, 3, 4, 5], ns="x")) == a[:1]  # partial block not hashed


def test_prefix_reuse_counts_whole_blocks_and_leaves_last_token_to_compute():
    bm = BlockManager(16, BS)
    assert admit(bm, seq(list(range(10)), rid="1")) == 0
    assert admit(bm, seq(list(range(10)) + [99], rid="2")) == 8
    # A prompt that is exactly cached blocks reuses all but its final block.
    assert admit(bm, seq(list(range(8)), rid="3")) == 4


def test_namespaces_never_share_blocks():
    bm = BlockManager(16, BS)
    admit(bm, seq(list(range(12)), ns="a", rid="1"))
    assert admit(bm, seq(list(range(12)), ns="b", rid="2")) == 0
    assert admit(bm, seq(list(range(12)), ns="a", rid="3")) == 8


def test_free_returns_every_block_and_lru_evicts_oldest_first():
    bm = BlockManager(4, BS)
    s1 = seq(list(range(8)) + [0], rid="1")
    admit(bm, s1)
    assert bm.num_free_blocks == 1
    bm.free(s1)
    assert bm.num_free_blocks == 4 and len(bm.key_to_block) == 2
    s2 = seq([50 + i for i in range(13)], rid="2")  # needs all 4 blocks: evicts both cached ones
    admit(bm, s2)
    assert bm.num_free_blocks == 0 and len(bm.key_to_block) == 3
    bm.free(s2)
    assert bm.num_free_blocks == 4
    assert admit(bm, seq(list(range(8)) + [0], rid="3")) == 0


def test_lru_keeps_recently_used_prefix():
    bm = BlockManager(3, BS)
    admit(bm, seq([1] * 4 + [2], rid="a"), then_free=True)
    admit(bm, seq([3] * 4 + [4], rid="b"), then_free=True)
    # touches a's block: now the most recent
    assert admit(bm, seq([1] * 4 + [5], rid="a2"), then_free=True) == 4
    # needs 2 blocks: takes the free one, then evicts b's (the least recent)
    admit(bm, seq([7] * 5, rid="c"), then_free=True)
    assert admit(bm, seq([1] * 4 + [6], rid="a3")) == 4
