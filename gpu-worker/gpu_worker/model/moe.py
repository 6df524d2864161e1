"""DeepSeekMoE: sigmoid router with group-limited top-k, routed experts dispatched by expert, shared experts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .layers import SMALL_STEP_TOKENS, SwiGLU, empty_param


class Router(nn.Module):
    """Chooses num_experts_per_tok experts per token and their weights.

    The correction bias only steers *selection*; the weights are the unbiased sigmoid scores of the
    chosen experts, normalised and multiplied by routed_scaling_factor. Groups outside the best
    topk_group (a group scores the sum of its two best biased scores) are masked with -inf, as in
    DeepSeek's reference and transformers 5.x. Computed in float32 so expert choice does not depend on
    the activation dtype.
    """

    def __init__(self, config: ModelConfig, device=None):
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.n_group = config.n_group
        self.topk_group = config.topk_group
        self.normalise = config.norm_topk_prob
        self.scale = config.routed_scaling_factor
        self.weight = empty_param(config.n_routed_experts, config.hidden_size, dtype=torch.float32, device=device)
        self.e_score_correction_bias = empty_param(config.n_routed_experts, dtype=torch.float32, device=device)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [T, dim] -> (weights [T, k] float32, expert ids [T, k])."""
        scores = F.linear(x.float(), self.weight).sigmoid()  # [T, E]
        choice = scores + self.e_score_correction_bias
        if self.n_group > 1 and self.topk_group < self.n_group:
            tokens = choice.shape[0]
            grouped = choice.view(tokens, self.n_group, -1)
            group_score = grouped.topk(2, dim=-1).values.sum(dim=-1)  # [T, G]
            kept = group_score.topk(self.topk_group, dim=-1).indices
            keep = torch.zeros_like(group_score, dtype=torch.bool).scatter_(1, kept, True)
            choice = grouped.masked_fill_(~keep[:, :, None], float("-inf")).view(tokens, -1)  # choice is ours
        ids = choice.topk(self.top_k, dim=-1, sorted=False).indices
        weights = scores.gather(1, ids)
        if self.normalise:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        return weights * self.scale, ids


# Largest gathered expert-weight copy (elements) for which the gathered path is used: 16M elements
# (32 MB in bf16). On CPU the gathered batched matmul beat sorting + grouped_mm ~2x for a 128-token
# prefill of the embedded model; a real DeepSeek-V3 expert (44M elements) always takes the sorted path.
GATHER_LIMIT = 1 << 24

# Steps of at most this many tokens on CPU run the gathered experts in float32 (see RoutedExperts._gathered).
GATHER_WIDEN_TOKENS = SMALL_STEP_TOKENS

# Largest expert stack (routed + shared expert elements of a layer) that MoE copies to run the shared
# experts inside the gathered routed-expert products (see MoE.forward).
FUSED_STACK_ELEMENTS = 1 << 22


def gathered_compute_dtype(x: torch.Tensor) -> torch.dtype:
    if x.device.type == "cpu" and x.shape[0] <= GATHER_WIDEN_TOKENS:
        return torch.float32
    return x.dtype


class RoutedExperts(nn.Module):
    """All routed experts' SwiGLU weights stacked: gate_up [E, 2*inter, dim], down [E, dim, inter]."""

    def __init__(self, config: ModelConfig, dtype: torch.dtype, device=None):
        super().__init__()
        self.num_experts = config.n_routed_experts
        self.inter = config.moe_intermediate_size
        dim = config.hidden_size
        self.gate_up_proj = empty_param(self.num_experts, 2 * self.inter, dim, dtype=dtype, device=device)
        self.down_proj = empty_param(self.num_experts, dim, self.inter, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """x [T, dim], weights/ids [T, k] -> sum_k weights * expert_ids(x)  [T, dim]."""
        if self.uses_gathered(*ids.shape):
            return self._gathered(x, weights, ids)
        return self._sorted(x, weights, ids)

    def _sorted(self, x, weights, ids) -> torch.Tensor:
        """Token copies sorted by expert; each expert runs one matrix product over its tokens."""
        tokens, top_k = ids.shape
        flat_ids = ids.flatten()
        order = flat_ids.argsort(stable=True)
        counts = torch.bincount(flat_ids, minlength=self.num_experts)
        rows = x[order // top_k]  # [T*k, dim], grouped by expert
        hidden = grouped_linear(rows, self.gate_up_proj, counts)
        gate, up = hidden.split(self.inter, dim=-1)
        out = grouped_linear(F.silu(gate) * up, self.down_proj, counts)
        unsorted = out[order.argsort()]  # back to (token, slot) order; a gather, cheaper than a scatter
        weighted = unsorted.view(tokens, top_k, -1) * weights[:, :, None]
        return weighted.sum(dim=1).to(x.dtype)

    def _gathered(self, x, weights, ids, stacks=None) -> torch.Tensor:
        """Small batches (decode): gather each (token, expert) pair's weights and run one batched matmul
        per projection; the k outputs of a token are weighted and summed by a third. Fewer ops than
        sorting; only used while the gathered copy stays small. `stacks` (gate_up, down), when given,
        replace the expert weights (MoE passes float32 copies with the shared experts appended).

        For a small step on CPU the gathered half-precision weights are widened to float32 first: there
        ATen's half-precision batched GEMVs cost several times the float32 ones, and float32 products with
        float32 sums are what a half-precision GEMM with float32 accumulation computes. Larger gathers
        stay in the model dtype (widening them costs more than oneDNN's half-precision GEMMs)."""
        tokens, top_k = ids.shape
        flat_ids = ids.flatten()
        compute = gathered_compute_dtype(x)
        gate_up_proj, down_proj = stacks if stacks is not None else (self.gate_up_proj, self.down_proj)
        gate_up = gate_up_proj.index_select(0, flat_ids).to(compute)
        hidden = torch.bmm(gate_up.view(tokens, top_k * 2 * self.inter, -1), x.to(compute).unsqueeze(-1))
        gate, up = hidden.view(tokens * top_k, 2 * self.inter).split(self.inter, dim=-1)
        down = down_proj.index_select(0, flat_ids).to(compute)  # [T*k, dim, inter]
        out = torch.bmm(down, (F.silu(gate) * up).unsqueeze(-1))  # [T*k, dim, 1]
        weighted = torch.bmm(weights.to(compute).unsqueeze(1), out.view(tokens, top_k, -1))  # [T, 1, dim]
        return weighted.squeeze(1).to(x.dtype)

    def uses_gathered(self, tokens: int, top_k: int) -> bool:
        per_pair = self.gate_up_proj[0].numel() + self.down_proj[0].numel()
        return tokens * top_k * per_pair <= GATHER_LIMIT

    def checkpoint_layout(self, prefix: str) -> dict[str, tuple[torch.Tensor, tuple]]:
        layout = {}
        gate, up = slice(0, self.inter), slice(self.inter, 2 * self.inter)
        for e in range(self.num_experts):
            layout[f"{prefix}.{e}.gate_proj.weight"] = (self.gate_up_proj, (e, gate))
            layout[f"{prefix}.{e}.up_proj.weight"] = (self.gate_up_proj, (e, up))
            layout[f"{prefix}.{e}.down_proj.weight"] = (self.down_proj, (e,))
        return layout


def grouped_linear(rows: torch.Tensor, weight: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """rows [N, in] sorted by group, weight [G, out, in], counts [G] -> [N, out]; row block g uses weight[g]."""
    if _grouped_mm_supported(rows, weight):
        offsets = counts.cumsum(0).to(torch.int32)
        return F.grouped_mm(rows, weight.transpose(-2, -1), offs=offsets)
    return grouped_linear_reference(rows, weight, counts)


def grouped_linear_reference(rows: torch.Tensor, weight: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """One matmul per non-empty group (needs the counts on the host)."""
    out = rows.new_empty(rows.shape[0], weight.shape[1])
    start = 0
    for group, count in enumerate(counts.tolist()):
        if count:
            out[start : start + count] = F.linear(rows[start : start + count], weight[group])
            start += count
    return out


def _grouped_mm_supported(rows: torch.Tensor, weight: torch.Tensor) -> bool:
    if not hasattr(F, "grouped_mm"):
        return False
    # grouped GEMM needs 16-byte aligned rows on every device
    size = rows.element_size()
    if (weight.shape[-1] * size) % 16 or (weight.shape[-2] * size) % 16:
        return False
    if rows.device.type == "cpu":
        return rows.dtype in (torch.float32, torch.bfloat16)
    return (
        rows.device.type == "cuda"
        and rows.dtype == torch.bfloat16
        and torch.cuda.get_device_capability(rows.device) >= (8, 0)
    )


class MoE(nn.Module):
    def __init__(self, config: ModelConfig, dtype: torch.dtype, device=None):
        super().__init__()
        self.gate = Router(config, device=device)
        self.experts = RoutedExperts(config, dtype=dtype, device=device)
        self.shared_experts = (
            SwiGLU(config.hidden_size, config.moe_intermediate_size * config.n_shared_experts, dtype, device)
            if config.n_shared_experts
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights, ids = self.gate(x)
        tokens = x.shape[0]
        n_shared = self.n_shared
        if n_shared and self.experts.uses_gathered(tokens, ids.shape[1] + n_shared):
            stacks = self._fused_stacks(x.dtype)
            if stacks is not None:
                # the shared experts as always-chosen experts of weight 1: one set of batched products
                shared_ids, ones = self._shared_slots
                ids = torch.cat((ids, shared_ids.expand(tokens, -1)), dim=1)
                weights = torch.cat((weights, ones.expand(tokens, -1)), dim=1)
                return self.experts._gathered(x, weights, ids, stacks)
        out = self.experts(x, weights, ids)
        if self.shared_experts is not None:
            out = out + self.shared_experts(x)
        return out

    @property
    def n_shared(self) -> int:
        return 0 if self.shared_experts is None else self.shared_experts.inter // self.experts.inter

    def _fused_stacks(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(gate_up [E + S, 2*inter, dim], down [E + S, dim, inter]) in `dtype`: the routed experts then
        the shared experts' S = n_shared slices (a SwiGLU of S*inter is the sum of S SwiGLUs of inter, one
        per slice of its gate/up rows and down columns). Cached, rebuilt when a weight changes; None when
        the stack would be large (a real DeepSeek-V3 layer: never copied)."""
        experts, shared = self.experts, self.shared_experts
        params = (experts.gate_up_proj, experts.down_proj, shared.gate_up_proj, shared.down_proj)
        if sum(p.numel() for p in params) > FUSED_STACK_ELEMENTS:
            return None
        key = (dtype, *((p._version, p.data_ptr()) for p in params))
        if getattr(self, "_fused_key", None) != key:
            s, inter, dim = self.n_shared, experts.inter, shared.down_proj.shape[0]
            shared_gate_up = shared.gate_up_proj.view(2, s, inter, dim).transpose(0, 1).reshape(s, 2 * inter, dim)
            shared_down = shared.down_proj.view(dim, s, inter).transpose(0, 1)
            self._fused = (
                torch.cat((experts.gate_up_proj, shared_gate_up)).to(dtype).contiguous(),
                torch.cat((experts.down_proj, shared_down)).to(dtype).contiguous(),
            )
            device = experts.gate_up_proj.device
            self._shared_slots = (
                torch.arange(experts.num_experts, experts.num_experts + s, device=device)[None],
                torch.ones(1, s, device=device),
            )
            self._fused_key = key
        return self._fused

    def checkpoint_layout(self, prefix: str) -> dict[str, tuple[torch.Tensor, tuple]]:
        layout = {
            f"{prefix}.gate.weight": (self.gate.weight, ()),
            f"{prefix}.gate.e_score_correction_bias": (self.gate.e_score_correction_bias, ()),
            **self.experts.checkpoint_layout(f"{prefix}.experts"),
        }
        if self.shared_experts is not None:
            layout.update(self.shared_experts.checkpoint_layout(f"{prefix}.shared_experts"))
        return layout
