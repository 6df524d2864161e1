"""Next-token choice for a batch of sequences, each with its own sampling parameters.

Order: penalties on the raw logits, log-probabilities (what `logprobs` reports), then greedy
or temperature + top-p sampling. Sampling draws from a per-request torch.Generator when the
request has a seed, so the same seed gives the same tokens whatever else is in the batch.
"""
from __future__ import annotations

import torch

from .sequence import SamplingParams, TokenLogprob


def apply_penalties(logits: torch.Tensor, output_ids: list[list[int]], params: list[SamplingParams]) -> torch.Tensor:
    rows = [i for i, p in enumerate(params)
            if (p.frequency_penalty or p.presence_penalty) and output_ids[i]]
    if not rows:
        return logits
    logits = logits.clone()
    vocab = logits.shape[-1]
    for i in rows:
        ids = torch.tensor(output_ids[i], device=logits.device, dtype=torch.long)
        counts = torch.bincount(ids, minlength=vocab)[:vocab].to(logits.dtype)
        logits[i] -= params[i].frequency_penalty * counts + params[i].presence_penalty * (counts > 0).to(logits.dtype)
    return logits


def top_p_filter(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero the tail outside the smallest set whose mass reaches top_p (probs: [V])."""
    if top_p >= 1.0:
        return probs
    sorted_probs, order = torch.sort(probs, descending=True)
    cumulative = torch.cumsum(sorted_probs, dim=-1)
    outside = cumulative - sorted_probs >= top_p  # keeps at least the top token
    sorted_probs[outside] = 0.0
    return torch.zeros_like(probs).scatter_(-1, order, sorted_probs)


class Sampler:
    def __init__(self):
        self.default_generator: dict[str, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self.default_generator:
            g = torch.Generator(device=device)
            g.seed()
            self.default_generator[key] = g
        return self.default_generator[key]

    def __call__(self, logits: torch.Tensor, params: list[SamplingParams], output_ids: list[list[int]],
                 generators: list[torch.Generator | None]) -> tuple[list[int], list[TokenLogprob | None]]:
        logits = apply_penalties(logits.float(), output_ids, params)
        tokens: list[int] = []
        greedy_rows = [i for i, p in enumerate(params) if p.greedy]
        chosen = torch.empty(len(params), dtype=torch.long, device=logits.device)
        if greedy_rows:
            idx = torch.tensor(greedy_rows, device=logits.device)
            chosen[idx] = logits[idx].argmax(dim=-1)
        for i, p in enumerate(params):
            if p.greedy:
                continue
            probs = torch.softmax(logits[i] / p.temperature, dim=-1)
            probs = top_p_filter(probs, p.top_p)
            g = generators[i] or self._generator(logits.device)
            chosen[i] = torch.multinomial(probs, 1, generator=g)[0]
        tokens = chosen.tolist()

        logprobs: list[TokenLogprob | None] = [None] * len(params)
        want = [i for i, p in enumerate(params) if p.logprobs]
        if want:
            idx = torch.tensor(want, device=logits.device)
            lp = torch.log_softmax(logits[idx], dim=-1)
            k = max(params[i].top_logprobs for i in want)
            top_vals, top_ids = (lp.topk(k, dim=-1) if k else (None, None))
            chosen_lp = lp.gather(1, chosen[idx].unsqueeze(1)).squeeze(1).tolist()
            for row, i in enumerate(want):
                n = params[i].top_logprobs
                top = []
                if n:
                    top = list(zip(top_ids[row, :n].tolist(), top_vals[row, :n].tolist()))
                logprobs[i] = TokenLogprob(tokens[i], chosen_lp[row], top)
        return tokens, logprobs
