"""Next-token choice for a whole batch on the device, with no per-row work and no host sync
until the chosen ids are read back.

Order: frequency/presence penalties on the raw logits, log-probabilities (what `logprobs`
reports), then greedy rows take the argmax and the others invert their CDF (temperature applied,
top-p tail zeroed) at one uniform number: an exact categorical draw that needs one random number
per row rather than one per vocabulary entry (a Gumbel race over 129K entries per row costs more
than a small batch's forward pass on CPU).

The number is counter-based: a hash of (the request's seed, how many tokens it has generated),
computed on the host where both are known, so a seeded request draws the same whatever else is in
the batch, whichever bucket its step ran in and across preemptions. Unseeded requests get a random
seed at admission.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .sequence import Sequence, TokenLogprob

_M32 = 0xFFFFFFFF
_MUL1, _MUL2 = 0x7FEB352D, 0x846CA68B


def mix32(x: int) -> int:
    """A 32-bit integer hash (xorshift-multiply rounds, "lowbias32")."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * _MUL1) & _M32
    x = x ^ (x >> 15)
    x = (x * _MUL2) & _M32
    return x ^ (x >> 16)


def uniform(seed: int, step: int) -> float:
    """The random number of one request at one output position, in (0, 1), 53 bits."""
    key = mix32(seed & _M32) ^ mix32(((seed >> 32) & _M32) + 0x9E3779B9)
    hi, lo = mix32(key ^ mix32(2 * step + 1)), mix32(key ^ mix32(2 * step + 2))
    return ((hi << 21 | lo >> 11) + 0.5) / 2.0 ** 53


class OutputCounts:
    """How often each sequence has generated each token, kept on the device for the penalties.

    One row per live sequence that uses a penalty ([rows, vocab] float32), updated in place by the
    sampler, released when the sequence ends. The last row is scratch for rows without one."""

    def __init__(self, vocab_size: int, device: torch.device, capacity: int = 8):
        self.vocab_size, self.device = vocab_size, device
        self.table = torch.zeros(capacity + 1, vocab_size, device=device)
        self.rows: dict[str, int] = {}
        self.free = list(range(capacity - 1, -1, -1))

    @property
    def scratch(self) -> int:
        return self.table.shape[0] - 1

    def row(self, seq: Sequence) -> int:
        if seq.request_id in self.rows:
            return self.rows[seq.request_id]
        if not self.free:
            grown = self.table.shape[0] - 1
            self.table = torch.cat((self.table[:-1], torch.zeros(grown + 1, self.vocab_size, device=self.device)))
            self.free = list(range(2 * grown - 1, grown - 1, -1))
        row = self.rows[seq.request_id] = self.free.pop()
        self.table[row].zero_()
        if seq.output_ids:  # admitted with output already (not the usual path): count it once
            ids = torch.tensor(seq.output_ids, device=self.device)
            self.table[row].index_add_(0, ids, torch.ones(ids.shape, device=self.device))
        return row

    def release(self, request_id: str) -> None:
        row = self.rows.pop(request_id, None)
        if row is not None:
            self.free.append(row)


@dataclass
class SamplingBatch:
    """One step's sampling parameters as device tensors [B] (one host-to-device copy), plus the
    few host facts that choose which stages run."""
    temperature: torch.Tensor
    top_p: torch.Tensor
    frequency_penalty: torch.Tensor
    presence_penalty: torch.Tensor
    uniform: torch.Tensor        # the row's random number in (0, 1)
    count_rows: torch.Tensor     # int64 row of OutputCounts (scratch when the row has no penalty)
    greedy: torch.Tensor         # bool
    counts: OutputCounts | None
    all_greedy: bool
    any_greedy: bool
    any_top_p: bool
    logprob_rows: list[int]
    top_logprobs: list[int]

    @classmethod
    def build(cls, seqs: list[Sequence], device: torch.device, counts: OutputCounts | None) -> "SamplingBatch":
        rows = []
        any_penalty = False
        for seq in seqs:
            p = seq.params
            penalised = bool((p.frequency_penalty or p.presence_penalty) and counts is not None)
            any_penalty |= penalised
            rows.append((1.0 if p.greedy else p.temperature, p.top_p, p.frequency_penalty, p.presence_penalty,
                         uniform(seq.seed, seq.num_output_tokens),
                         counts.row(seq) if penalised else (counts.scratch if counts else 0),
                         1.0 if p.greedy else 0.0))
        host = torch.tensor(rows, dtype=torch.float64)  # every field is exact in float64
        if device.type == "cuda":
            host = host.pin_memory()
        packed = host.to(device, non_blocking=True)
        as_f32 = packed.float()
        logprob_rows = [i for i, s in enumerate(seqs) if s.params.logprobs]
        return cls(temperature=as_f32[:, 0], top_p=as_f32[:, 1], frequency_penalty=as_f32[:, 2],
                   presence_penalty=as_f32[:, 3], uniform=as_f32[:, 4], count_rows=packed[:, 5].long(),
                   greedy=packed[:, 6] > 0, counts=counts if any_penalty else None,
                   all_greedy=all(s.params.greedy for s in seqs), any_greedy=any(s.params.greedy for s in seqs),
                   any_top_p=any(s.params.top_p < 1.0 and not s.params.greedy for s in seqs),
                   logprob_rows=logprob_rows, top_logprobs=[seqs[i].params.top_logprobs for i in logprob_rows])


def nucleus_mask(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """[B, V] bool: the smallest set of tokens whose mass reaches top_p (ties at the edge kept)."""
    ordered = probs.sort(dim=-1, descending=True).values
    cumulative = ordered.cumsum(dim=-1)
    keep = (cumulative - ordered) < torch.where(top_p >= 1.0, torch.full_like(top_p, float("inf")), top_p)[:, None]
    last = (keep.sum(dim=-1, keepdim=True) - 1).clamp_(min=0)  # the top token is always kept
    return probs >= ordered.gather(1, last)


def apply_penalties(logits: torch.Tensor, batch: SamplingBatch) -> torch.Tensor:
    """logits - frequency * count - presence * (count > 0), in place, for the whole batch."""
    counts = batch.counts.table.index_select(0, batch.count_rows)
    logits -= batch.frequency_penalty[:, None] * counts + batch.presence_penalty[:, None] * (counts > 0).float()
    return logits


class Sampler:
    @torch.inference_mode()
    def choose(self, logits: torch.Tensor, batch: SamplingBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Chosen ids [B] on the device and, when any row asks for logprobs, the log-softmax of those
        rows. Nothing here waits for the device. Overwrites logits."""
        logits = logits.float()
        if batch.counts is not None:
            apply_penalties(logits, batch)
        logprobs = torch.log_softmax(logits[batch.logprob_rows], dim=-1) if batch.logprob_rows else None
        greedy = logits.argmax(dim=-1) if batch.any_greedy else None
        if batch.all_greedy:
            chosen = greedy
        else:
            probs = torch.softmax(logits.div_(batch.temperature[:, None]), dim=-1)
            if batch.any_top_p:
                probs = probs.masked_fill_(~nucleus_mask(probs, batch.top_p), 0.0)
            cdf = probs.cumsum_(dim=-1)
            # right=True: a zero-probability token is an empty interval, never hit.
            chosen = torch.searchsorted(cdf, batch.uniform[:, None] * cdf[:, -1:], right=True).squeeze(1)
            chosen = chosen.clamp_(max=cdf.shape[-1] - 1)
            if greedy is not None:
                chosen = torch.where(batch.greedy, greedy, chosen)
        if batch.counts is not None:
            ones = torch.ones(chosen.shape, device=chosen.device)
            batch.counts.table.index_put_((batch.count_rows, chosen), ones, accumulate=True)
        return chosen, logprobs

    def __call__(self, logits: torch.Tensor, batch: SamplingBatch) -> tuple[list[int], list[TokenLogprob | None]]:
        """Next token per row (and its log-probabilities when asked): the step's one host sync."""
        chosen, logprobs = self.choose(logits, batch)
        tokens = chosen.tolist()
        out: list[TokenLogprob | None] = [None] * len(tokens)
        if logprobs is None:
            return tokens, out
        k = max(batch.top_logprobs)
        top_vals, top_ids = logprobs.topk(k, dim=-1) if k else (None, None)
        rows = torch.tensor(batch.logprob_rows, device=logprobs.device)
        chosen_lp = logprobs.gather(1, chosen[rows][:, None]).squeeze(1).tolist()
        top_vals, top_ids = (top_vals.tolist(), top_ids.tolist()) if k else ([], [])
        for j, (i, n) in enumerate(zip(batch.logprob_rows, batch.top_logprobs)):
            top = list(zip(top_ids[j][:n], top_vals[j][:n])) if n else []
            out[i] = TokenLogprob(tokens[i], chosen_lp[j], top)
        return tokens, out
