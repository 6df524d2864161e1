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


def top_p_filter(probs: torch.Tensor, top_p: float, candidates: int = 1024) -> torch.Tensor:
    """Zero the tail outside the smallest set whose mass reaches top_p (probs: [V]).

    The nucleus of a trained model almost always lies within its top few hundred tokens, so
    those are tried first (a partial top-k instead of sorting the whole vocabulary); a flat
    distribution falls back to the full sort. Both give the same result.
    """
    if top_p >= 1.0:
        return probs
    k = min(candidates, probs.numel())
    vals, ids = probs.topk(k)
    cumulative = torch.cumsum(vals, dim=-1)
    if k < probs.numel() and float(cumulative[-1]) < top_p:
        vals, ids = torch.sort(probs, descending=True)
        cumulative = torch.cumsum(vals, dim=-1)
    keep = cumulative - vals < top_p  # always keeps the top token
    out = torch.zeros_like(probs)
    out[ids[keep]] = vals[keep]
    return out


class Sampler:
    """Greedy rows take the argmax. Sampled rows invert the CDF at one uniform draw per row,
    taken from the request's own generator: an exact categorical draw that costs one random
    number instead of one per vocabulary entry (an exponential race over 129K entries per row
    costs more than the whole forward pass of a small batch on CPU)."""

    def __init__(self):
        self.default_generators: dict[str, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self.default_generators:
            g = torch.Generator(device=device)
            g.seed()
            self.default_generators[key] = g
        return self.default_generators[key]

    @torch.inference_mode()
    def __call__(self, logits: torch.Tensor, params: list[SamplingParams], output_ids: list[list[int]],
                 generators: list[torch.Generator | None]) -> tuple[list[int], list[TokenLogprob | None]]:
        """Next token (and its log-probabilities when asked) per row; overwrites logits."""
        logits = apply_penalties(logits.float(), output_ids, params)
        device = logits.device
        logprob_rows = [i for i, p in enumerate(params) if p.logprobs]
        # Log-probabilities of the penalised distribution, before temperature (what clients expect).
        logprobs_table = torch.log_softmax(logits[logprob_rows], dim=-1) if logprob_rows else None

        greedy = [i for i, p in enumerate(params) if p.greedy]
        sampled = [i for i, p in enumerate(params) if not p.greedy]
        chosen = torch.empty(len(params), dtype=torch.long, device=device)
        if greedy:
            rows = logits if len(greedy) == len(params) else logits[greedy]
            chosen[greedy] = rows.argmax(dim=-1)
        if sampled:
            rows = logits if len(sampled) == len(params) else logits[sampled]
            inv_temps = torch.tensor([1.0 / params[i].temperature for i in sampled], device=device, dtype=rows.dtype)
            probs = torch.softmax(rows.mul_(inv_temps[:, None]), dim=-1)  # logits are consumed
            draws = []
            for row, i in enumerate(sampled):
                if params[i].top_p < 1.0:
                    probs[row] = top_p_filter(probs[row], params[i].top_p)
                g = generators[i] or self._generator(device)
                draws.append(torch.rand((1,), generator=g, device=device))
            cdf = probs.cumsum_(dim=-1)
            targets = torch.cat(draws)[:, None] * cdf[:, -1:]
            # right=True: a zero-probability token is an empty interval, never hit.
            picked = torch.searchsorted(cdf, targets, right=True).squeeze(1)
            chosen[sampled] = picked.clamp_(max=cdf.shape[-1] - 1)
        tokens = chosen.tolist()

        logprobs: list[TokenLogprob | None] = [None] * len(params)
        if logprob_rows:
            lp = logprobs_table
            k = max(params[i].top_logprobs for i in logprob_rows)
            top_vals, top_ids = lp.topk(k, dim=-1) if k else (None, None)
            chosen_lp = lp.gather(1, chosen[logprob_rows].unsqueeze(1)).squeeze(1).tolist()
            for row, i in enumerate(logprob_rows):
                n = params[i].top_logprobs
                top = list(zip(top_ids[row, :n].tolist(), top_vals[row, :n].tolist())) if n else []
                logprobs[i] = TokenLogprob(tokens[i], chosen_lp[row], top)
        return tokens, logprobs
