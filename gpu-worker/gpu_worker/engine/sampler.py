"""Next-token choice for a whole batch on the device, with no per-row work and no host sync
until the chosen ids are read back.

Order: frequency/presence penalties on the raw logits, log-probabilities (what `logprobs`
reports), then greedy rows take the argmax and the others race: argmax(log p_i - log E_i) with
E_i ~ Exp(1) is an exact draw from p (the Gumbel-max trick). Top-p masks the race to the nucleus.

The noise is counter-based: E_i is a hash of (the request's seed, how many tokens it has
generated, token id i), so a seeded request draws the same numbers whatever else is in the batch,
whichever bucket its step ran in and across preemptions. Unseeded requests get a random seed at
admission.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .sequence import Sequence, TokenLogprob

_M32 = 0xFFFFFFFF
# Odd multipliers below 2**31: a 32-bit value times one stays below 2**63, so the int64 device
# arithmetic never overflows and CPU and CUDA agree bit for bit.
_MUL1, _MUL2 = 0x7FEB352D, 0x2C1B3C6D


def mix32(x):
    """A 32-bit integer hash (xorshift-multiply rounds); works on Python ints and int64 tensors."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * _MUL1) & _M32
    x = x ^ (x >> 15)
    x = (x * _MUL2) & _M32
    return x ^ (x >> 16)


def row_key(seed: int, step: int) -> int:
    """The noise stream of one request at one output position."""
    return mix32(mix32(seed & _M32) ^ mix32((seed >> 32) & _M32) ^ mix32(step * 0x9E3779B9 + 1))


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
    row_keys: torch.Tensor       # int64 noise stream per row
    count_rows: torch.Tensor     # int64 row of OutputCounts (scratch when the row has no penalty)
    greedy: torch.Tensor         # bool
    counts: OutputCounts | None
    all_greedy: bool
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
                         row_key(seq.seed, seq.num_output_tokens),
                         counts.row(seq) if penalised else (counts.scratch if counts else 0),
                         1.0 if p.greedy else 0.0))
        host = torch.tensor(rows, dtype=torch.float64)  # every field is exact in float64 (keys < 2**32)
        if device.type == "cuda":
            host = host.pin_memory()
        packed = host.to(device, non_blocking=True)
        as_f32 = packed.float()
        logprob_rows = [i for i, s in enumerate(seqs) if s.params.logprobs]
        return cls(temperature=as_f32[:, 0], top_p=as_f32[:, 1], frequency_penalty=as_f32[:, 2],
                   presence_penalty=as_f32[:, 3], row_keys=packed[:, 4].long(), count_rows=packed[:, 5].long(),
                   greedy=packed[:, 6] > 0, counts=counts if any_penalty else None,
                   all_greedy=all(s.params.greedy for s in seqs),
                   any_top_p=any(s.params.top_p < 1.0 and not s.params.greedy for s in seqs),
                   logprob_rows=logprob_rows, top_logprobs=[seqs[i].params.top_logprobs for i in logprob_rows])


def exponential_noise(row_keys: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """log E for E ~ Exp(1), one per (row, token): [B, V] float32, from the counter hash."""
    columns = mix32(torch.arange(vocab_size, device=row_keys.device, dtype=torch.int64) * 0x9E3779B1 + 0x85EBCA6B)
    bits = mix32(row_keys[:, None] ^ columns[None, :]) >> 8  # 24 uniform bits
    u = (bits.float() + 0.5) * (1.0 / (1 << 24))  # in (0, 1), never 0 or 1
    return torch.log(-torch.log(u))


def nucleus_mask(logprobs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """[B, V] bool: the smallest set of tokens whose mass reaches top_p (ties at the edge kept)."""
    probs = logprobs.exp()
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
        chosen = logits.argmax(dim=-1)
        if not batch.all_greedy:
            scaled = torch.log_softmax(logits / batch.temperature[:, None], dim=-1)
            if batch.any_top_p:
                scaled = scaled.masked_fill(~nucleus_mask(scaled, batch.top_p), float("-inf"))
            raced = (scaled - exponential_noise(batch.row_keys, logits.shape[-1])).argmax(dim=-1)
            chosen = torch.where(batch.greedy, chosen, raced)
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
