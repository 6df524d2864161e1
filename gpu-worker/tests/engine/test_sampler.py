import torch

from gpu_worker.engine.sampler import Sampler, apply_penalties, top_p_filter
from gpu_worker.engine.sequence import SamplingParams


def test_top_p_keeps_smallest_nucleus_on_both_paths():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    nucleus = torch.tensor([0.5, 0.3, 0.0, 0.0])
    assert torch.equal(top_p_filter(probs, 0.7), nucleus)
    assert torch.equal(top_p_filter(probs, 0.7, candidates=2), nucleus)
    flat = torch.full((100,), 0.01)
    assert int((top_p_filter(flat, 0.5, candidates=10) > 0).sum()) == 50  # fallback: full sort


def test_penalties_lower_repeated_tokens():
    logits = torch.zeros(1, 5)
    out = apply_penalties(logits, [[2, 2, 3]], [SamplingParams(frequency_penalty=1.0, presence_penalty=0.5)])
    assert out[0].tolist() == [0.0, 0.0, -2.5, -1.5, 0.0]


def test_greedy_seeded_and_logprobs():
    sampler = Sampler()
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    params = [SamplingParams(temperature=0), SamplingParams(temperature=1.0, seed=1, logprobs=True, top_logprobs=2),
              SamplingParams(temperature=0.7, top_p=0.5)]

    def gens():
        return [None, torch.Generator().manual_seed(1), None]
    a, lps = sampler(logits.clone(), params, [[], [], []], gens())
    b, _ = sampler(logits.clone(), params, [[], [], []], gens())
    assert a[0] == int(logits[0].argmax()) and a[1] == b[1]
    assert lps[0] is None and len(lps[1].top) == 2
    assert abs(lps[1].logprob - float(torch.log_softmax(logits[1], -1)[a[1]])) < 1e-5


def test_sampling_follows_the_distribution():
    sampler = Sampler()
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(3)
    for _ in range(2000):
        counts[sampler(logits.clone(), [SamplingParams(temperature=1.0)], [[]], [g])[0][0]] += 1
    assert torch.allclose(counts / 2000, torch.tensor([0.7, 0.2, 0.1]), atol=0.04)
