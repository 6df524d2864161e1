"""DeepSeekMoE: sigmoid router with group-limited top-k, routed experts dispatched by expert, shared experts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gpu_worker.parallel.collectives import all_reduce
from gpu_worker.parallel.experts import expert_parallel_moe
from gpu_worker.parallel.state import current

from . import fp8
from .config import ModelConfig
from .layers import SwiGLU, empty_param


class Router(nn.Module):
    """Chooses num_experts_per_tok experts per token and their weights.

    The correction bias only steers *selection*; the weights are the unbiased sigmoid scores of the
    chosen experts, normalised and multiplied by routed_scaling_factor. Groups outside the best
    topk_group (a group scores the sum of its two best biased scores) are masked with -inf, as in
    DeepSeek's reference and transformers 5.x. Computed in float32 so expert choice does not depend on
    the activation dtype.
    """

    def __init__(self, config: ModelConfig, device=None, kernel_backend: str = "torch"):
        super().__init__()
        self.kernel_backend = kernel_backend
        self.top_k = config.num_experts_per_tok
        self.n_group = config.n_group
        self.topk_group = config.topk_group
        self.normalise = config.norm_topk_prob
        self.scale = config.routed_scaling_factor
        self.weight = empty_param(config.n_routed_experts, config.hidden_size, dtype=torch.float32, device=device)
        self.e_score_correction_bias = empty_param(config.n_routed_experts, dtype=torch.float32, device=device)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [T, dim] -> (weights [T, k] float32, expert ids [T, k] int64)."""
        logits = F.linear(x.float(), self.weight)  # [T, E]
        if self.kernel_backend == "triton":
            from gpu_worker.kernels.router import fused_route  # needs triton: imported on first use

            return fused_route(logits, self.e_score_correction_bias, self.top_k, self.n_group, self.topk_group,
                               self.normalise, self.scale)
        scores = logits.sigmoid()
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


class RoutedExperts(nn.Module):
    """This rank's routed experts' SwiGLU weights stacked: gate_up [E, 2*inter, dim], down [E, dim, inter].

    One rank: all experts, whole. Expert parallel: experts [e0, e1) whole, ids local to the rank.
    Tensor parallel: all experts, a 1/N slice of each one's intermediate width (outputs are partial sums).

    FP8 (config.fp8_block_size set): the weights stay e4m3 as the checkpoint ships them, with fp32 scales
    per 128x128 block: gate_up_scale [E, 2 * ceil(inter/128), ceil(dim/128)] (gate's block rows, then
    up's), down_scale [E, ceil(dim/128), ceil(inter/128)]. The Triton backend multiplies them as they are
    (W8A8); the torch reference dequantises them, then multiplies."""

    def __init__(self, config: ModelConfig, dtype: torch.dtype, device=None, kernel_backend: str = "torch"):
        super().__init__()
        p, total, inter = current(), config.n_routed_experts, config.moe_intermediate_size
        expert_parallel = p.expert_parallel and p.size > 1
        self.expert_part = p.part(total, "n_routed_experts") if expert_parallel else slice(0, total)
        self.inter_part = slice(0, inter) if expert_parallel else p.part(inter, "moe_intermediate_size")
        self.total_experts = total
        self.num_experts = self.expert_part.stop - self.expert_part.start
        self.inter = self.inter_part.stop - self.inter_part.start
        self.kernel_backend = kernel_backend
        self.fp8 = fp8.keeps_fp8(config)
        dim, weight_dtype = config.hidden_size, fp8.FP8_DTYPE if self.fp8 else dtype
        self.gate_up_proj = empty_param(self.num_experts, 2 * self.inter, dim, dtype=weight_dtype, device=device)
        self.down_proj = empty_param(self.num_experts, dim, self.inter, dtype=weight_dtype, device=device)
        self.gate_up_scale = self.down_scale = None
        if self.fp8:
            e, blocks = self.num_experts, fp8.blocks
            self.gate_up_scale = empty_param(e, 2 * blocks(self.inter), blocks(dim), dtype=torch.float32, device=device)
            self.down_scale = empty_param(e, blocks(dim), blocks(self.inter), dtype=torch.float32, device=device)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor, shared: SwiGLU | None = None
                ) -> torch.Tensor:
        """x [T, dim], weights/ids [T, k] -> sum_k weights * expert_ids(x)  [T, dim] (+ shared(x): a SwiGLU
        of one expert's width, run as one more expert; triton backend only)."""
        if self.kernel_backend == "triton":
            from gpu_worker.kernels.fused_moe import fused_experts  # needs triton: imported on first use

            extra = None if shared is None else (shared.gate_up_proj.weight, shared.down_proj.weight,
                                                 shared.gate_up_proj.weight_scale_inv, shared.down_proj.weight_scale_inv)
            return fused_experts(x, weights, ids, self.gate_up_proj, self.down_proj, self.gate_up_scale,
                                 self.down_scale, shared=extra)
        if shared is not None:
            raise ValueError("the torch reference runs the shared experts on their own")
        return experts_reference(x, weights, ids, *self.dequantized(x.dtype))

    def dequantized(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(gate_up, down) in `dtype` (the FP8 weights times their block scales)."""
        if not self.fp8:
            return self.gate_up_proj, self.down_proj
        return (fp8.dequantize(self.gate_up_proj, self.gate_up_scale, dtype=dtype, split=self.inter),
                fp8.dequantize(self.down_proj, self.down_scale, dtype=dtype))

    def checkpoint_layout(self, prefix: str) -> dict[str, tuple | None]:
        """name -> (parameter, index, this rank's slice of the checkpoint tensor); None for other ranks' experts."""
        layout = {}
        gate, up = slice(0, self.inter), slice(self.inter, 2 * self.inter)
        rows, cols = (self.inter_part,), (slice(None), self.inter_part)
        for e in range(self.total_experts):
            local = e - self.expert_part.start
            mine = 0 <= local < self.num_experts
            layout[f"{prefix}.{e}.gate_proj.weight"] = (self.gate_up_proj, (local, gate), rows) if mine else None
            layout[f"{prefix}.{e}.up_proj.weight"] = (self.gate_up_proj, (local, up), rows) if mine else None
            layout[f"{prefix}.{e}.down_proj.weight"] = (self.down_proj, (local,), cols) if mine else None
            if self.fp8:
                gate_blocks, up_blocks = fp8.block_slice(gate), fp8.block_slice(up, split=self.inter)
                scale_rows, scale_cols = fp8.block_source(rows), fp8.block_source(cols)
                layout[f"{prefix}.{e}.gate_proj.weight_scale_inv"] = (
                    (self.gate_up_scale, (local, gate_blocks), scale_rows) if mine else None)
                layout[f"{prefix}.{e}.up_proj.weight_scale_inv"] = (
                    (self.gate_up_scale, (local, up_blocks), scale_rows) if mine else None)
                layout[f"{prefix}.{e}.down_proj.weight_scale_inv"] = (
                    (self.down_scale, (local,), scale_cols) if mine else None)
        return layout


def experts_reference(x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor, gate_up: torch.Tensor,
                      down: torch.Tensor) -> torch.Tensor:
    """The torch reference: token copies sorted by expert; each expert runs one matrix product over its
    tokens (the counts are read on the host). gate_up [E, 2*inter, dim], down [E, dim, inter]."""
    tokens, top_k = ids.shape
    inter = down.shape[-1]
    flat_ids = ids.flatten()
    order = flat_ids.argsort(stable=True)
    counts = torch.bincount(flat_ids, minlength=gate_up.shape[0])
    rows = x[order // top_k]  # [T*k, dim], grouped by expert
    hidden = grouped_linear(rows, gate_up, counts)
    gate, up = hidden.split(inter, dim=-1)
    out = grouped_linear(F.silu(gate) * up, down, counts)
    unsorted = out[order.argsort()]  # back to (token, slot) order; a gather, cheaper than a scatter
    weighted = unsorted.view(tokens, top_k, -1) * weights[:, :, None]
    return weighted.sum(dim=1).to(x.dtype)


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
    """Routed experts plus the shared experts.

    On the triton backend a single shared expert (DeepSeek-V3's) is folded into the routed experts'
    launches as one more expert every token chooses with weight 1: the same bytes read, four launches
    fewer per layer (its two GEMMs, the activation and the sum), which is most of what a decode step's
    shared expert costs. It stays a separate SwiGLU under expert parallelism (replicated, it runs on the
    token's own rank while the routed copies travel), when there are several (V2-Lite's two form one
    wider MLP, not experts of the routed width) and on the torch reference."""

    def __init__(self, config: ModelConfig, dtype: torch.dtype, device=None, kernel_backend: str = "torch"):
        super().__init__()
        self.gate = Router(config, device=device, kernel_backend=kernel_backend)
        self.experts = RoutedExperts(config, dtype=dtype, device=device, kernel_backend=kernel_backend)
        p = current()
        self.expert_parallel = p.expert_parallel and p.size > 1
        # expert parallel: the shared experts are replicated; tensor parallel: split like a dense MLP
        self.shared_experts = (
            SwiGLU(config.hidden_size, config.moe_intermediate_size * config.n_shared_experts, dtype, device,
                   tensor_parallel=not self.expert_parallel, quantized=fp8.keeps_fp8(config),
                   kernel_backend=kernel_backend)
            if config.n_shared_experts
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.expert_parallel:
            return expert_parallel_moe(x, self.gate, self.experts, self.experts.num_experts, self.gate.top_k,
                                       self.shared_experts)
        weights, ids = self.gate(x)
        if self.folds_shared:
            out = self.experts(x, weights, ids, shared=self.shared_experts)
        else:
            out = self.experts(x, weights, ids)
            if self.shared_experts is not None:
                out = out + self.shared_experts.partial(x)
        return all_reduce(out)  # tensor parallel: each rank's slice of every expert gave a partial sum

    @property
    def folds_shared(self) -> bool:
        shared = self.shared_experts
        return (self.experts.kernel_backend == "triton" and not self.expert_parallel and shared is not None
                and shared.inter == self.experts.inter)

    def checkpoint_layout(self, prefix: str) -> dict[str, tuple[torch.Tensor, tuple]]:
        layout = {
            f"{prefix}.gate.weight": (self.gate.weight, ()),
            f"{prefix}.gate.e_score_correction_bias": (self.gate.e_score_correction_bias, ()),
            **self.experts.checkpoint_layout(f"{prefix}.experts"),
        }
        if self.shared_experts is not None:
            layout.update(self.shared_experts.checkpoint_layout(f"{prefix}.shared_experts"))
        return layout
