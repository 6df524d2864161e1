"""DeepSeekMoE: sigmoid router with group-limited top-k, routed experts, shared experts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gpu_worker.parallel.collectives import all_reduce
from gpu_worker.parallel.experts import expert_parallel_moe
from gpu_worker.parallel.state import current

from . import fp8
from .backend import triton_kernel
from .config import ModelConfig
from .layers import SwiGLU, empty_param


class Router(nn.Module):
    """Top-k experts per token and their weights. The correction bias only steers *selection*; the
    weights are unbiased sigmoid scores, normalised and scaled. Groups outside the best topk_group
    (scored by their two best biased scores) are masked, as in DeepSeek's reference. float32, so
    that the choice does not depend on the activation dtype."""

    def __init__(self, config: ModelConfig, device=None, kernel_backend: str = "torch"):
        super().__init__()
        self.fused_route = triton_kernel(kernel_backend, "router", "fused_route")
        self.top_k = config.num_experts_per_tok
        self.n_group = config.n_group
        self.topk_group = config.topk_group
        self.normalise = config.norm_topk_prob
        self.scale = config.routed_scaling_factor
        experts = config.n_routed_experts
        self.weight = empty_param(experts, config.hidden_size, dtype=torch.float32, device=device)
        self.e_score_correction_bias = empty_param(experts, dtype=torch.float32, device=device)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [T, dim] -> (weights [T, k] float32, expert ids [T, k] int64)."""
        logits = F.linear(x.float(), self.weight)  # [T, E]
        if self.fused_route:
            return self.fused_route(logits, self.e_score_correction_bias, self.top_k, self.n_group,
                                    self.topk_group, self.normalise, self.scale)
        scores = logits.sigmoid()
        choice = scores + self.e_score_correction_bias
        if self.n_group > 1 and self.topk_group < self.n_group:
            grouped = choice.view(choice.shape[0], self.n_group, -1)
            group_score = grouped.topk(2, dim=-1).values.sum(dim=-1)  # [T, G]
            kept = group_score.topk(self.topk_group, dim=-1).indices
            keep = torch.zeros_like(group_score, dtype=torch.bool).scatter_(1, kept, True)
            choice = grouped.masked_fill_(~keep[:, :, None], float("-inf")).flatten(1)
        ids = choice.topk(self.top_k, dim=-1, sorted=False).indices
        weights = scores.gather(1, ids)
        if self.normalise:
            weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
        return weights * self.scale, ids


class RoutedExperts(nn.Module):
    """This rank's routed experts, stacked: gate_up [E, 2*inter, dim], down [E, dim, inter]. Expert
    parallel: experts [e0, e1) whole; tensor parallel: 1/N of every expert's width."""

    def __init__(self, config: ModelConfig, dtype: torch.dtype, device=None,
                 kernel_backend: str = "torch"):
        super().__init__()
        p, total, inter = current(), config.n_routed_experts, config.moe_intermediate_size
        expert_parallel = p.expert_parallel and p.size > 1
        self.expert_part = p.part(total, "n_routed_experts") if expert_parallel else slice(0, total)
        self.inter_part = (slice(0, inter) if expert_parallel
                           else p.part(inter, "moe_intermediate_size"))
        self.total_experts = total
        self.num_experts = self.expert_part.stop - self.expert_part.start
        self.inter = self.inter_part.stop - self.inter_part.start
        self.fused = triton_kernel(kernel_backend, "fused_moe", "fused_experts")
        self.fp8 = fp8.keeps_fp8(config)
        e, dim = self.num_experts, config.hidden_size
        weight_dtype = fp8.FP8_DTYPE if self.fp8 else dtype
        self.gate_up_proj = empty_param(e, 2 * self.inter, dim, dtype=weight_dtype, device=device)
        self.down_proj = empty_param(e, dim, self.inter, dtype=weight_dtype, device=device)
        self.gate_up_scale = self.down_scale = None
        if self.fp8:
            blocks, scale = fp8.blocks, dict(dtype=torch.float32, device=device)
            self.gate_up_scale = empty_param(e, 2 * blocks(self.inter), blocks(dim), **scale)
            self.down_scale = empty_param(e, blocks(dim), blocks(self.inter), **scale)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor,
                shared: SwiGLU | None = None) -> torch.Tensor:
        """x [T, dim], weights/ids [T, k] -> sum_k weights * expert_ids(x) (+ shared(x) as one more
        expert: triton backend only)."""
        if self.fused:
            extra = None if shared is None else (
                shared.gate_up_proj.weight, shared.down_proj.weight,
                shared.gate_up_proj.weight_scale_inv, shared.down_proj.weight_scale_inv)
            return self.fused(x, weights, ids, self.gate_up_proj, self.down_proj,
                              self.gate_up_scale, self.down_scale, shared=extra)
        return experts_reference(x, weights, ids, *self.dequantized(x.dtype))

    def dequantized(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.fp8:
            return self.gate_up_proj, self.down_proj
        return (fp8.dequantize(self.gate_up_proj, self.gate_up_scale, dtype, split=self.inter),
                fp8.dequantize(self.down_proj, self.down_scale, dtype))

    def checkpoint_layout(self, prefix: str) -> dict[str, tuple | None]:
        """name -> (parameter, index, this rank's part); None for other ranks' experts."""
        gate, up = slice(0, self.inter), slice(self.inter, 2 * self.inter)
        rows, cols = (self.inter_part,), (slice(None), self.inter_part)
        # (checkpoint name, parameter, index within the expert, this rank's part); then the scales
        parts = [("gate_proj.weight", self.gate_up_proj, (gate,), rows),
                 ("up_proj.weight", self.gate_up_proj, (up,), rows),
                 ("down_proj.weight", self.down_proj, (), cols)]
        if self.fp8:
            scale_rows, scale_cols = fp8.block_source(rows), fp8.block_source(cols)
            gate_blocks, up_blocks = fp8.block_slice(gate), fp8.block_slice(up, split=self.inter)
            parts += [
                ("gate_proj.weight_scale_inv", self.gate_up_scale, (gate_blocks,), scale_rows),
                ("up_proj.weight_scale_inv", self.gate_up_scale, (up_blocks,), scale_rows),
                ("down_proj.weight_scale_inv", self.down_scale, (), scale_cols)]
        layout = {}
        for e in range(self.total_experts):
            local = e - self.expert_part.start
            mine = 0 <= local < self.num_experts
            for name, param, index, source in parts:
                layout[f"{prefix}.{e}.{name}"] = (param, (local, *index), source) if mine else None
        return layout


def experts_reference(x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor,
                      gate_up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """The torch reference: token copies sorted by expert, one matrix product per expert with tokens
    (counts read on the host)."""
    tokens, top_k = ids.shape
    order = ids.flatten().argsort(stable=True)
    counts = torch.bincount(ids.flatten(), minlength=gate_up.shape[0]).tolist()
    rows = x[order // top_k]  # [T*k, dim], grouped by expert
    out = torch.empty_like(rows)
    start = 0
    for expert, count in enumerate(counts):
        if count:
            gate, up = F.linear(rows[start:start + count], gate_up[expert]).chunk(2, dim=-1)
            out[start:start + count] = F.linear(F.silu(gate) * up, down[expert])
            start += count
    unsorted = out[order.argsort()]  # back to (token, slot) order; a gather, cheaper than a scatter
    return (unsorted.view(tokens, top_k, -1) * weights[:, :, None]).sum(dim=1).to(x.dtype)


class MoE(nn.Module):
    """Routed plus shared experts. On the triton backend a single shared expert (V3's) is folded
    into the routed launches (the same bytes read, four launches fewer per layer); it stays a
    separate SwiGLU under expert parallelism, when wider (V2-Lite's two) and on the torch path."""

    def __init__(self, config: ModelConfig, dtype: torch.dtype, device=None,
                 kernel_backend: str = "torch"):
        super().__init__()
        self.gate = Router(config, device=device, kernel_backend=kernel_backend)
        self.experts = RoutedExperts(config, dtype, device, kernel_backend)
        p = current()
        self.expert_parallel = p.expert_parallel and p.size > 1
        self.shared_experts = None
        if config.n_shared_experts:  # replicated under expert parallelism, else split like an MLP
            inter = config.moe_intermediate_size * config.n_shared_experts
            self.shared_experts = SwiGLU(
                config.hidden_size, inter, dtype, device, tensor_parallel=not self.expert_parallel,
                quantized=fp8.keeps_fp8(config), kernel_backend=kernel_backend)
        self.folds_shared = (self.experts.fused is not None and not self.expert_parallel
                             and self.shared_experts is not None
                             and self.shared_experts.inter == self.experts.inter)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.expert_parallel:
            return expert_parallel_moe(x, self.gate, self.experts, self.experts.num_experts,
                                       self.gate.top_k, self.shared_experts)
        weights, ids = self.gate(x)
        if self.folds_shared:
            return all_reduce(self.experts(x, weights, ids, shared=self.shared_experts))
        out = self.experts(x, weights, ids)
        if self.shared_experts is not None:
            out = out + self.shared_experts.partial(x)
        return all_reduce(out)  # tensor parallel: each rank's slice of every expert gave a partial sum

    def checkpoint_layout(self, prefix: str) -> dict[str, tuple[torch.Tensor, tuple]]:
        layout = {
            f"{prefix}.gate.weight": (self.gate.weight, ()),
            f"{prefix}.gate.e_score_correction_bias": (self.gate.e_score_correction_bias, ()),
            **self.experts.checkpoint_layout(f"{prefix}.experts"),
        }
        if self.shared_experts is not None:
            layout.update(self.shared_experts.checkpoint_layout(f"{prefix}.shared_experts"))
        return layout
