"""How a step splits into its decode part and its prefill part, and what each part describes."""

import torch

from gpu_worker.model.attention_metadata import MAX_DECODE_SPLITS, AttentionMetadata, decode_splits

CPU = torch.device("cpu")


def test_leading_single_token_sequences_decode_and_the_rest_prefill():
    # two decodes, a chunk of 3 over a 5-token prefix, a fresh prompt of 2, then a lone token after them
    meta = AttentionMetadata.build([([7], 3, 1), ([2, 9], 4, 1), ([4, 1], 5, 3), ([6], 0, 2), ([3], 1, 1)],
                                   block_size=4)
    assert meta.num_decodes == 2
    decode = meta.decode
    assert decode.context_lens.tolist() == [4, 5] and decode.max_context_len == 5
    assert decode.block_tables.tolist() == [[7, 0], [2, 9]]
    prefill = meta.prefill
    assert prefill.query_lens == [3, 2, 1] and prefill.context_lens == [8, 2, 2]
    assert prefill.cu_query_lens.tolist() == [0, 3, 5, 6] and prefill.cu_context_lens.tolist() == [0, 8, 10, 12]
    # every context token of the prefilled sequences only, block by block
    expected = [4 * 4 + o for o in range(4)] + [1 * 4 + o for o in range(4)] + [24, 25] + [12, 13]
    assert prefill.context_slots.tolist() == expected
    assert meta.slot_mapping.tolist() == [31, 36, 5, 6, 7, 24, 25, 13]


def test_pure_decode_and_pure_prefill_steps_have_one_part():
    decode = AttentionMetadata.build([([0], 2, 1), ([1], 0, 1)], block_size=4)
    assert decode.prefill is None and decode.decode.context_lens.tolist() == [3, 1]
    prefill = AttentionMetadata.build([([0], 0, 3)], block_size=4)
    assert prefill.decode is None and prefill.num_decodes == 0


def test_static_buffer_metadata_needs_no_host_lists():
    # what a CUDA-graph runner passes: device tensors plus host maxima; decodes only
    meta = AttentionMetadata(cu_query_lens=torch.arange(4), context_lens=torch.tensor([5, 1, 9]),
                             block_tables=torch.zeros(3, 4, dtype=torch.long), slot_mapping=torch.zeros(3, dtype=torch.long),
                             block_size=4, max_query_len=1, max_context_len=16)
    assert meta.num_decodes == 3 and meta.prefill is None
    assert meta.decode.max_context_len == 16 and meta.decode.num_splits == decode_splits(3, 16, CPU)


def test_split_count_grows_with_context_and_shrinks_with_batch():
    assert decode_splits(1, 200, CPU) == 1  # short context: no split
    assert decode_splits(1, 2048, CPU) == 8
    assert decode_splits(64, 8192, CPU) == 1  # the batch alone fills the (nominal) processors
    assert decode_splits(1, 1 << 20, CPU) <= MAX_DECODE_SPLITS
