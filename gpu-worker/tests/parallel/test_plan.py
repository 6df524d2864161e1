"""The memory plan of DeepSeek-V3 (671B, FP8) on 8 GPUs, against numbers worked out by hand below."""
import pytest

from gpu_worker.plan import load_config, main, make_plan, parse_size

GB = 10**9
V3 = load_config("deepseek-v3")

# ---- hand arithmetic, TP8 + EP8 ------------------------------------------------------------------
# An FP8 [r, c] projection: r*c bytes of e4m3 + ceil(r/128)*ceil(c/128) float32 scales.
Q_A = 1536 * 7168 + 12 * 56 * 4             # 11,012,736   q_a_proj, replicated
Q_B = (16 * 192) * 1536 + 24 * 12 * 4       # 4,719,744    q_b_proj, 16 of 128 heads x 192
KV_A = 576 * 7168 + 5 * 56 * 4              # 4,129,888    kv_a_proj_with_mqa, replicated (512 + 64 rows)
KV_B = (16 * 256) * 512 + 32 * 4 * 4        # 2,097,664    kv_b_proj, 16 heads x (128 nope + 128 v)
O = 7168 * (16 * 128) + 56 * 16 * 4         # 14,683,648   o_proj, 16 heads x 128 columns
ATTENTION = 61 * (Q_A + Q_B + KV_A + KV_B + O)                       # 2,235,264,480
ABSORBED = 61 * 16 * 256 * 512 * 2                                   # 255,852,544 bf16 W_UK/W_UV
NORMS = 61 * (2 * 7168 + 1536 + 512) * 2 + 7168 * 2                  # 2,013,184
EMBEDDING = LM_HEAD = 16160 * 7168 * 2      # 129280 / 8 = 16160 rows, bf16: 231,669,760 each
DENSE = 3 * (2 * (2304 * 7168 + 18 * 56 * 4) + (7168 * 2304 + 56 * 18 * 4))  # 18432 / 8 = 2304: 148,671,936
ROUTER = 58 * (256 * 7168 * 4 + 256 * 4)    # float32 weight + bias: 425,781,248
EXPERT = 2 * (2048 * 7168 + 16 * 56 * 4) + (7168 * 2048 + 56 * 16 * 4)      # 44,050,944
ROUTED = 58 * 32 * EXPERT                   # 256 / 8 = 32 experts per rank: 81,758,552,064
SHARED = 58 * EXPERT                        # replicated: 2,554,954,752
WEIGHTS = EMBEDDING + LM_HEAD + ATTENTION + ABSORBED + NORMS + DENSE + ROUTER + ROUTED + SHARED

# One layer of a 2048-token step, bf16, plus 256 sampled rows of float32 logits (local shard + gathered).
ACTIVATIONS = (2 * (2 * 2048 * 7168                          # residual + normed hidden
                    + 2048 * (1536 + 576 + 16 * (192 + 128))  # q_a, latent, q, attention output
                    + 65536 * 16 * (192 + 128)                # one 64K sequence's expanded keys and values
                    + 2048 * 8 * (2 * 7168 + 3 * 2048))        # 8 expert copies per token: in, gate_up, act, out
               + 256 * (16160 + 129280) * 4)                  # = 1,579,450,368
# all-to-all: 256-token chunk x 8 copies sent, up to 2048 x 8 copies received, for dispatch and for combine;
# all-gather of the 8 chunks
COMMUNICATION = 2 * (256 * 8 * 7168 * 2 + 2048 * 8 * 7168 * 2) + 8 * 256 * 7168 * 2   # 557,842,432
RESERVE = 3 * 2**30
KV_PER_TOKEN = 61 * (512 + 64) * 2          # 70,272 B
KV_64K = 65536 * KV_PER_TOKEN               # 4,605,345,792 B per sequence per rank
BUDGET = 141 * GB - WEIGHTS - ACTIVATIONS - COMMUNICATION - RESERVE  # 47,797,052,000


def test_v3_weights_per_rank_match_the_hand_count():
    plan = make_plan(V3, 8, 141 * GB)
    by_name = {line.name.split(" (")[0].split(" x")[0]: line.bytes for line in plan.weights}
    assert by_name == {"embedding": EMBEDDING, "lm_head": LM_HEAD, "attention": ATTENTION,
                       "absorbed W_UK/W_UV": ABSORBED, "norms": NORMS, "dense MLP": DENSE, "router": ROUTER,
                       "routed experts": ROUTED, "shared experts": SHARED}
    assert plan.weight_bytes == WEIGHTS == 87_844_429_728


def test_v3_cache_activations_and_largest_batch():
    plan = make_plan(V3, 8, 141 * GB)
    assert plan.kv_per_token == KV_PER_TOKEN == 70_272
    assert plan.activations == ACTIVATIONS == 1_579_450_368
    assert plan.communication == COMMUNICATION == 557_842_432
    assert plan.cache_budget == BUDGET == 47_797_052_000
    assert plan.max_sequences(65536) == BUDGET // KV_64K == 10
    assert plan.max_sequences(4096) == BUDGET // (4096 * KV_PER_TOKEN) == 166


def test_tensor_parallel_alone_splits_every_expert_and_the_shared_one():
    plan = make_plan(V3, 8, 141 * GB, expert_parallel=False)
    by_name = {line.name.split(" x")[0]: line.bytes for line in plan.weights}
    # 256 experts, each 2048 / 8 = 256 wide: gate/up [256, 7168] with 2 x 56 scales, down [7168, 256] with 56 x 2
    tp_expert = 2 * (256 * 7168 + 2 * 56 * 4) + (7168 * 256 + 56 * 2 * 4)
    assert by_name["routed experts"] == 58 * 256 * tp_expert
    assert by_name["shared experts"] == 58 * tp_expert
    assert plan.communication == 0


def test_the_command_prints_the_plan(capsys):
    assert main(["--checkpoint-config", "deepseek-v3", "--gpus", "8", "--gpu-memory", "141GB"]) == 0
    out = capsys.readouterr().out
    assert f"{WEIGHTS:,d} B" in out
    assert "65536-token sequences:   4.29 GiB each -> largest batch 10" in out


def test_bad_inputs_are_refused(capsys):
    assert main(["--checkpoint-config", "deepseek-v3", "--gpus", "7", "--gpu-memory", "141GB"]) == 2
    error = capsys.readouterr().err
    assert "num_attention_heads (128) is not divisible by the tensor-parallel size 7" in error
    assert main(["--checkpoint-config", "/nonexistent/config.json", "--gpus", "8", "--gpu-memory", "1GB"]) == 2
    # too small a GPU: the weights alone do not fit, nothing is left for the cache
    assert main(["--checkpoint-config", "deepseek-v3", "--gpus", "8", "--gpu-memory", "80GB"]) == 1
    with pytest.raises(ValueError):
        parse_size("lots")
    assert parse_size("139GiB") == 139 * 2**30 and parse_size("141GB") == 141 * GB
