"""The batched sampler: greedy rows, penalties, logprobs, top-p, and seeded draws that do not
depend on the rest of the batch."""
import torch

from gpu_worker.engine.sampler import OutputCounts, Sampler, SamplingBatch, nucleus_mask
from gpu_worker.engine.sequence import SamplingParams, Sequence


def seqs_for(params):
    return [Sequence(f"r{i}", [5, 6], p) for i, p in enumerate(params)]


def sample(logits, seqs, counts=None):
    return Sampler()(logits.clone(), SamplingBatch(seqs, logits.device, counts))


def test_nucleus_keeps_smallest_set_reaching_top_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5], [0.25, 0.25, 0.25, 0.25]])
    mask = nucleus_mask(probs, torch.tensor([0.7, 0.7, 1.0]))
    assert mask.tolist() == [[True, True, False, False], [False, False, True, True], [True] * 4]
    assert nucleus_mask(probs[:1], torch.tensor([1e-6]))[0].tolist() == [True, False, False, False]


def test_penalties_lower_generated_tokens_only_for_rows_that_ask():
    counts = OutputCounts(5, torch.device("cpu"), max_num_seqs=2)
    seqs = seqs_for([SamplingParams(temperature=0, frequency_penalty=1.0, presence_penalty=0.5),
                     SamplingParams(temperature=0)])
    # token 2 leads by 2.4: once generated it costs 1.5, twice 2.5, and token 0 wins; row 1 has no
    # penalty and keeps token 2
    logits = torch.tensor([[0.0, 0.0, 2.4, 0.0, -1.0]] * 2)
    assert [sample(logits, seqs, counts)[0] for _ in range(3)] == [[2, 2], [2, 2], [0, 2]]
    assert counts.table[counts.rows["r0"]].tolist() == [1.0, 0.0, 2.0, 0.0, 0.0]
    counts.release("r0")
    assert "r0" not in counts.rows and len(counts.free) == 2


def test_greedy_rows_and_logprobs():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    params = [SamplingParams(temperature=0), SamplingParams(temperature=1.0, seed=1, logprobs=True, top_logprobs=2),
              SamplingParams(temperature=0.7, top_p=0.5)]
    a, lps = sample(logits, seqs_for(params))
    b, _ = sample(logits, seqs_for(params))
    assert a[0] == int(logits[0].argmax()) and a[1] == b[1]
    assert lps[0] is None and lps[2] is None and len(lps[1].top) == 2
    assert abs(lps[1].logprob - float(torch.log_softmax(logits[1], -1)[a[1]])) < 1e-5
    assert lps[1].top[0][0] == int(logits[1].argmax())


def test_seeded_draw_is_independent_of_batch_composition():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 300, generator=g)
    params = [SamplingParams(temperature=0.9, top_p=0.9, seed=s) for s in range(6)]
    together, _ = sample(logits, seqs_for(params))
    alone = [sample(logits[i:i + 1], seqs_for([params[i]]))[0][0] for i in range(6)]
    assert together == alone
    reordered, _ = sample(logits.flip(0), seqs_for(params[::-1]))
    assert reordered[::-1] == together
    # a different seed, or a later output position, draws other numbers
    other = [sample(logits, seqs_for([SamplingParams(temperature=0.9, seed=s + 100) for s in range(6)]))[0]]
    assert other[0] != together


def test_draws_follow_the_distribution_and_the_nucleus():
    target, n = torch.tensor([0.6, 0.25, 0.1, 0.05]), 4000

    def frequencies(**params):
        seqs = seqs_for([SamplingParams(seed=i, **params) for i in range(n)])
        tokens, _ = sample(torch.log(target).repeat(n, 1), seqs)
        return torch.bincount(torch.tensor(tokens), minlength=4).float() / n

    assert torch.allclose(frequencies(temperature=1.0), target, atol=0.03)
    # top_p 0.8 keeps the first two tokens, renormalised to 0.6 / 0.85 and 0.25 / 0.85
    kept = frequencies(temperature=1.0, top_p=0.8)
    assert kept[2:].sum() == 0 and abs(float(kept[0]) - 0.6 / 0.85) < 0.03
    assert frequencies(temperature=0.2)[0] > 0.95  # a low temperature sharpens to the top token
