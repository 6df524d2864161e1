"""Next-token choice for a whole batch on the device, no per-row work, no host sync until the ids
are read back. Penalties apply to the raw logits (then `logprobs` are taken); sampled rows invert
their CDF (temperature, top-p) at one uniform number hashed from (seed, output position), so a
seeded request draws the same whatever else is in the batch and across preemptions.
"""
from __future__ import annotations

import hashlib

import torch

from .sequence import Sequence, TokenLogprob


def uniform(seed: int, step: int) -> float:
    """The random number of one request at one output position, in (0, 1), 53 bits."""
    digest = hashlib.blake2b(f"{seed}:{step}".encode(), digest_size=8).digest()
    return ((int.from_bytes(digest, "little") >> 11) + 0.5) / 2.0 ** 53


class OutputCounts:
    """Per penalised live sequence, how often it generated each token: [max_num_seqs + 1, vocab]
    on the device, allocated once; the last row is scratch for rows without a penalty.
    max_num_seqs rows suffice: a preempted sequence keeps its row but goes back to the front of
    the queue, before any request that has none."""

    def __init__(self, vocab_size: int, device: torch.device, max_num_seqs: int = 256):
        self.table = torch.zeros(max_num_seqs + 1, vocab_size, device=device)
        self.scratch = max_num_seqs
        self.rows: dict[str, int] = {}
        self.free = list(range(max_num_seqs))

    def row(self, seq: Sequence) -> int:
        if seq.request_id not in self.rows:
            self.rows[seq.request_id] = self.free.pop()
            self.table[self.rows[seq.request_id]].zero_()
        return self.rows[seq.request_id]

    def release(self, request_id: str) -> None:
        row = self.rows.pop(request_id, None)
        if row is not None:
            self.free.append(row)


class SamplingBatch:
    """One step's sampling parameters as device tensors [B] (one host-to-device copy), plus the
    host facts that choose which stages run."""

    def __init__(self, seqs: list[Sequence], device: torch.device, counts: OutputCounts | None):
        params = [seq.params for seq in seqs]
        penalised = [counts is not None and bool(p.frequency_penalty or p.presence_penalty)
                     for p in params]
        scratch = counts.scratch if counts else 0
        rows = [(1.0 if p.greedy else p.temperature, p.top_p, p.frequency_penalty,
                 p.presence_penalty, uniform(seq.seed, seq.num_output_tokens),
                 counts.row(seq) if pen else scratch, float(p.greedy))
                for seq, p, pen in zip(seqs, params, penalised)]
        host = torch.tensor(rows, dtype=torch.float64)  # every field is exact in float64
        if device.type == "cuda":
            host = host.pin_memory()
        packed = host.to(device, non_blocking=True)
        (self.temperature, self.top_p, self.frequency_penalty, self.presence_penalty,
         self.uniform) = packed[:, :5].float().unbind(1)
        self.count_rows = packed[:, 5].long()  # row of OutputCounts (scratch: no penalty)
        self.greedy = packed[:, 6] > 0
        self.counts = counts if any(penalised) else None
        self.all_greedy = all(p.greedy for p in params)
        self.any_top_p = any(p.top_p < 1.0 and not p.greedy for p in params)
        self.logprob_rows = [i for i, p in enumerate(params) if p.logprobs]
        self.top_logprobs = [params[i].top_logprobs for i in self.logprob_rows]


def nucleus_mask(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """[B, V] bool: the smallest set of tokens whose mass reaches top_p (ties at the edge kept)."""
    ordered = probs.sort(dim=-1, descending=True).values
    cumulative = ordered.cumsum(dim=-1)
    keep = (cumulative - ordered) < torch.where(top_p >= 1.0, torch.full_like(top_p, float("inf")), top_p)[:, None]
    last = (keep.sum(dim=-1, keepdim=True) - 1).clamp_(min=0)  # the top token is always kept
    return probs >= ordered.gather(1, last)


class Sampler:
    @torch.inference_mode()
    def choose(self, logits: torch.Tensor, batch: SamplingBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Chosen ids [B] on the device and, when any row asks for logprobs, the log-softmax of those
        rows. Nothing here waits for the device. Overwrites logits."""
        logits = logits.float()
        if batch.counts is not None:  # logits - frequency * count - presence * (count > 0)
            counts = batch.counts.table.index_select(0, batch.count_rows)
            logits -= batch.frequency_penalty[:, None] * counts
            logits -= batch.presence_penalty[:, None] * (counts > 0).float()
        logprobs = torch.log_softmax(logits[batch.logprob_rows], dim=-1) if batch.logprob_rows else None
        chosen = logits.argmax(dim=-1)
        if not batch.all_greedy:
            probs = torch.softmax(logits.div_(batch.temperature[:, None]), dim=-1)
            if batch.any_top_p:
                probs = probs.masked_fill_(~nucleus_mask(probs, batch.top_p), 0.0)
            cdf = probs.cumsum_(dim=-1)
            # right=True: a zero-probability token is an empty interval, never hit.
            drawn = torch.searchsorted(cdf, batch.uniform[:, None] * cdf[:, -1:], right=True)
            drawn = drawn.squeeze(1).clamp_(max=cdf.shape[-1] - 1)
            chosen = torch.where(batch.greedy, chosen, drawn)
        if batch.counts is not None:
            ones = torch.ones(chosen.shape, device=chosen.device)
            batch.counts.table.index_put_((batch.count_rows, chosen), ones, accumulate=True)
        return chosen, logprobs

    def __call__(self, logits: torch.Tensor, batch: SamplingBatch) -> tuple[list[int], list[TokenLogprob | None]]:
        """Next token per row (and its log-probabilities when asked): the step's one host sync."""
        chosen, logprobs = self.choose(logits, batch)
        tokens = chosen.tolist()
        out: list[TokenLogprob | None] = [None] * len(tokens)
        if logprobs is not None:
            rows = batch.logprob_rows
            chosen_lp = logprobs.gather(1, chosen[rows][:, None]).squeeze(1).tolist()
            top_vals, top_ids = (t.tolist() for t in logprobs.topk(max(batch.top_logprobs), dim=-1))
            for j, (i, n) in enumerate(zip(rows, batch.top_logprobs)):
                top = list(zip(top_ids[j][:n], top_vals[j][:n]))
                out[i] = TokenLogprob(tokens[i], chosen_lp[j], top)
        return tokens, out
