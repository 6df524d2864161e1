"""The decode step of a small model on CPU, in few ops: folded weights, float32 activations.

At batch 1 a decode step of the embedded model is ~0.1 MFLOP per layer spread over ~120 torch ops in the
module path, so each op's fixed cost (dispatch, allocation, Python) is the step's cost, plus the bytes of
weights it reads (the lm_head's 16 MB pass evicts them from the caches every step). This path runs the
same maths (absorbed MLA, group-limited sigmoid routing, gathered experts) with the weights folded by
decode_weights.py, in ~50 ops per layer:

- activations stay float32 for the whole step (the module path widens every small product to float32
  on CPU anyway and rounds back after it); cache entries are rounded to the cache dtype when written,
  the returned hidden state to the model dtype;
- the residual stream is carried as the signed pair [h, -h]: its layer norm is h's RMSNorm (zero mean,
  variance mean(h^2)) in one kernel, where x * rsqrt(mean(x^2) + eps) is five ops; a residual add is one
  addcmul with [1, -1];
- rope is one batched product per layer with a per-token [R + rope, R + rope] matrix (identity on the
  latent, 2x2 rotations on the rope pairs), built once per step (`StepBuffers.rotations`); it rotates every query
  head and the new cache entry (appended as one more head) at once;
- the chosen experts' weights are gathered (and widened) per token, or from ALL_EXPERTS_TOKENS tokens on
  every expert runs on every token; the down products, routing weights and sum over experts are one
  product;
- the step runs on one thread (`one_thread`).

Steps of at most COMPILED_TOKENS (all of them) run all of this as one call into a compiled kernel
instead (compiled_decode.py, decode_kernel.cpp: same folded weights, same float32 maths, plain loops),
when it could be built; these functions are its fallback (no C++ compiler, GPU_WORKER_COMPILED_DECODE=0,
a float16 model or cache).

Used for decode steps of at most SMALL_DECODE_TOKENS sequences on CPU when every layer is small enough
to fold (decode_weights.FOLDED_LAYER_ELEMENTS); any other step takes the module path.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from .attention_metadata import AttentionMetadata
from .compiled_decode import CompiledDecode
from .decode_weights import FOLDED_LAYER_ELEMENTS, FoldedAttention, FoldedMLP, FoldedMoE, fold_layer, rotation_basis

SMALL_DECODE_TOKENS = 32
# From this many tokens on, the experts run as one product over all experts (weights of the unchosen: 0)
# instead of gathering each token's chosen experts.
ALL_EXPERTS_TOKENS = 8
# Steps of at most this many tokens run on one thread (see one_thread).
ONE_THREAD_TOKENS = 8
# Steps of at most this many tokens run the compiled kernel when it is available (compiled_decode.py):
# every small decode step (the tests lower it to run the torch ops).
COMPILED_TOKENS = SMALL_DECODE_TOKENS

SIGNS = torch.tensor([1.0, -1.0]).view(1, 2, 1)  # a residual add to the signed pair [h, -h]


class SmallDecode:
    """Folded weights of a model and the step that uses them; refolds when any parameter changes."""

    def __init__(self, model):
        self.model = model
        self.params = list(model.parameters())
        self.fits = all(sum(p.numel() for p in layer.parameters()) <= FOLDED_LAYER_ELEMENTS for layer in model.layers)
        self.dim = model.config.hidden_size
        self._key = None
        self._layers = None
        self._per_batch: dict[int, StepBuffers] = {}
        self._compiled: CompiledDecode | None = None
        self._compiled_for = None  # the folded layers _compiled points into

    def applies(self, tokens: int, meta: AttentionMetadata, device: torch.device) -> bool:
        return self.fits and device.type == "cpu" and tokens <= SMALL_DECODE_TOKENS and meta.is_decode

    def folded_layers(self):
        key = [p._version for p in self.params]
        if key != self._key:
            self._layers = [fold_layer(layer, self.model.config) for layer in self.model.layers]
            self._per_batch.clear()
            self._key = key
        return self._layers

    def compiled(self) -> CompiledDecode | None:
        layers = self.folded_layers()
        if self._compiled_for is not layers:
            self._compiled, self._compiled_for = CompiledDecode.build(self.model, layers), layers
        return self._compiled

    def forward(self, input_ids, positions, meta: AttentionMetadata, kv_cache: torch.Tensor) -> torch.Tensor:
        """Packed new tokens [B] (one per sequence) -> final hidden states [B, hidden] in the model dtype."""
        if input_ids.shape[0] <= COMPILED_TOKENS:
            compiled = self.compiled()
            hidden = None if compiled is None else compiled(input_ids, positions, meta, kv_cache)
            if hidden is not None:
                return hidden
        if input_ids.shape[0] > ONE_THREAD_TOKENS:
            return self._forward(input_ids, positions, meta, kv_cache)
        with one_thread():
            return self._forward(input_ids, positions, meta, kv_cache)

    def _forward(self, input_ids, positions, meta: AttentionMetadata, kv_cache: torch.Tensor) -> torch.Tensor:
        model = self.model
        layers = self.folded_layers()
        batch = input_ids.shape[0]
        buffers = self._per_batch.get(batch)
        if buffers is None:
            buffers = self._per_batch[batch] = StepBuffers(batch, layers, model.config)
        h = F.embedding(input_ids, model.embed_tokens).float()
        stream = torch.stack((h, -h), dim=1)  # the signed pair [h, -h]: [B, 2, dim]
        rot = buffers.rotations(model.rotary.lookup(positions))
        slots, _ = meta.context_slots()
        context = buffers.context(slots.numel(), kv_cache.shape[-1], kv_cache.dtype)
        step = (meta.slot_mapping, slots.view(-1), meta.decode_bias(torch.float32), context)
        for folded, cache in zip(layers, kv_cache):
            stream = attention(folded.attn, stream, folded.eps, rot, step, cache)
            if isinstance(folded.mlp, FoldedMoE):
                stream = moe(folded.mlp, stream, folded.eps, buffers)
            else:
                stream = mlp(folded.mlp, stream, folded.eps)
        return stream[:, 0].to(model.dtype)


class StepBuffers:
    """Per-batch-size tensors of a step, made once: constants of the routers, the rope matrices' buffer
    and the context buffers."""

    def __init__(self, batch: int, layers, config):
        w = next((f.mlp for f in layers if isinstance(f.mlp, FoldedMoE)), None)
        if w is not None:
            experts = w.router.shape[1]
            self.dropped_groups = torch.full((batch, w.n_group), float("-inf"))
            self.no_routed = torch.zeros(batch, experts + w.n_shared)  # routing weights: 0, shared experts 1
            self.no_routed[:, experts:] = 1.0
            self.shared_ids = torch.arange(experts, experts + w.n_shared).expand(batch, -1).contiguous()
        rope, width = config.qk_rope_head_dim, config.kv_lora_rank + config.qk_rope_head_dim
        self.basis = rotation_basis(rope)
        self.rot = torch.eye(width).repeat(batch, 1, 1)  # the latent block stays the identity
        self.rope_block = self.rot[:, width - rope :, width - rope :]
        self._context = None
        self._all_experts = None
        self.batch = batch

    def all_experts(self, w: FoldedMoE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(gate/up products [T, (E + S) * 2 * inter] in the model dtype, the same widened to float32 (the
        same tensor for a float32 model), activations [T, E + S, inter] in the model dtype) for
        small_decode.all_experts; ~0.1 ms a layer of page faults at batch 32 when allocated fresh."""
        if self._all_experts is None:
            tokens, (experts, width, _), dtype = self.batch, w.gate_up.shape, w.gate_up.dtype
            products = torch.empty(tokens, experts * width, dtype=dtype)
            hidden = products if dtype == torch.float32 else torch.empty(tokens, experts * width)
            self._all_experts = (products, hidden, torch.empty(tokens, experts, w.inter, dtype=dtype))
        return self._all_experts

    def context(self, rows: int, width: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(gathered [rows, width] in the cache dtype, widened [rows, width] float32 or None for a float32
        cache): where each layer gathers its context entries and widens them. Reused (grown as contexts
        grow): at batch 32 a fresh ~1 MB tensor per layer cost ~0.2 ms in page faults, more than the copy."""
        if self._context is None or self._context[0].shape[0] < rows or self._context[0].dtype != dtype:
            capacity = max(rows, 2 * self._context[0].shape[0] if self._context is not None else 0)
            widened = torch.empty(capacity, width) if dtype != torch.float32 else None
            self._context = (torch.empty(capacity, width, dtype=dtype), widened)
        gathered, widened = self._context
        return gathered[:rows], None if widened is None else widened[:rows]

    def rotations(self, freqs: torch.Tensor) -> torch.Tensor:
        """freqs [B, rope/2] complex (unit phasors times YaRN's attention factor) -> [B, W, W]: x @ M keeps
        x's latent entries and rotates its interleaved rope pairs (decode_weights.rotation_basis)."""
        cs = torch.view_as_real(freqs).reshape(freqs.shape[0], -1)  # [B, rope]: c0, s0, c1, s1, ...
        self.rope_block.copy_(torch.mm(cs, self.basis).view(self.rope_block.shape))
        return self.rot


@contextmanager
def one_thread():
    """Run the step's ops on the calling thread only. They take microseconds, so a parallel region's
    fork/join (a few of the expert gathers and conversions cross ATen's grain size) costs more than it
    saves, and when another process holds the second core, waiting for it costs milliseconds (a batch-1
    step measured 1.1 ms on two threads vs 0.8 ms on one on an idle machine, 15-25 ms vs 0.9 ms on a busy
    one). Process-wide while it lasts, like layers.small_step_matmuls; restored afterwards."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def normalised(stream: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm of h (no gain: folded into the products that read it) from the signed pair
    stream [T, 2, dim] = [h, -h]: [T, dim], a view of the pair's layer norm."""
    return F.layer_norm(stream, stream.shape[1:], eps=eps)[:, 0]


def add_to_stream(stream: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[h, -h] + [y, -y] for y [T, 1, dim]."""
    return torch.addcmul(stream, y, SIGNS)


def attention(w: FoldedAttention, stream, eps, rot, step, cache) -> torch.Tensor:
    """stream [B, 2, dim] (one new token per sequence) -> stream + attention; writes the new cache entries."""
    slot_mapping, context_slots, bias, (gathered, widened) = step
    batch = stream.shape[0]
    qkv = torch.mm(normalised(stream, eps), w.qkv)
    # q_a and kv_a norms: each row's factor for its q and latent columns; 1 for the rope key
    factors = torch.rsqrt(torch.addmm(w.segment_eps, qkv.square(), w.segment_mean))
    normed = qkv * torch.addmm(w.segment_ones, factors, w.segment_spread)  # [B, q_cols + R + rope]
    if w.query is not None:
        normed = torch.cat((torch.mm(normed[:, : w.q_cols], w.query), normed[:, w.q_cols :]), dim=1)
    heads = torch.bmm(normed.view(batch, w.heads + 1, w.entry_width), rot)  # queries then the entry, rotated
    query, entry = heads[:, : w.heads], heads[:, w.heads]

    flat_cache = cache.view(-1, w.entry_width)
    flat_cache.index_copy_(0, slot_mapping, entry.to(cache.dtype))
    context = torch.index_select(flat_cache, 0, context_slots, out=gathered)
    if widened is not None:
        context = widened.copy_(context)
    context = context.view(batch, -1, w.entry_width)  # [B, L, R + rope] float32
    keys = context.transpose(1, 2)
    scores = torch.bmm(query, keys) if bias is None else torch.baddbmm(bias, query, keys)  # [B, H, L]
    latent_out = torch.bmm(scores.softmax(dim=-1), context[..., : w.rank])  # [B, H, R]
    return add_to_stream(stream, torch.mm(latent_out.view(batch, -1), w.out).unsqueeze(1))


def mlp(w: FoldedMLP, stream, eps) -> torch.Tensor:
    gate, up = torch.mm(normalised(stream, eps), w.gate_up).split(w.inter, dim=-1)
    return add_to_stream(stream, torch.mm(F.silu(gate) * up, w.down).unsqueeze(1))


def moe(w: FoldedMoE, stream, eps, buffers: StepBuffers) -> torch.Tensor:
    """stream [T, 2, dim] -> stream + MoE: route (as moe.Router), then one gathered product per projection."""
    tokens = stream.shape[0]
    normed = normalised(stream, eps)
    scores = torch.mm(normed, w.router).sigmoid()  # [T, E]
    choice = scores + w.bias
    if w.n_group > 1 and w.topk_group < w.n_group:
        grouped = choice.view(tokens, w.n_group, -1)
        group_score = grouped.topk(2, dim=-1).values.sum(dim=-1)  # [T, G]
        kept = group_score.topk(w.topk_group, dim=-1).indices
        choice = (grouped + buffers.dropped_groups.scatter(1, kept, 0.0).unsqueeze(-1)).view(tokens, -1)
    ids = choice.topk(w.top_k, dim=-1, sorted=False).indices
    weights = scores.gather(1, ids)
    if w.normalise:  # w / (sum + 1e-20) * scale
        weights = weights / ((weights.sum(dim=-1, keepdim=True) + 1e-20) / w.scale)
    elif w.scale != 1.0:
        weights = weights * w.scale
    if tokens >= ALL_EXPERTS_TOKENS:
        weights = buffers.no_routed.scatter(1, ids, weights)
        return add_to_stream(stream, all_experts(w, normed, weights, buffers).unsqueeze(1))
    ids = torch.cat((ids, buffers.shared_ids), dim=1).view(-1)  # [T * (k + S)]: the shared experts always run

    chosen = ids.shape[0] // tokens
    gate_up = w.gate_up.index_select(0, ids).float()
    x = (normed * w.gain).unsqueeze(-1)  # [T, dim, 1]
    hidden = torch.bmm(gate_up.view(tokens, chosen * 2 * w.inter, -1), x).view(tokens, chosen, 2, w.inter)
    act = F.silu(hidden[:, :, 0]) * hidden[:, :, 1]  # [T, k + S, inter]
    act[:, : w.top_k].mul_(weights.unsqueeze(-1))  # shared experts: weight 1
    down = w.down_t.index_select(0, ids).float()  # [T * (k + S), inter, dim]
    return add_to_stream(stream, torch.bmm(act.view(tokens, 1, -1), down.view(tokens, chosen * w.inter, -1)))


def all_experts(w: FoldedMoE, normed: torch.Tensor, weights: torch.Tensor, buffers: StepBuffers) -> torch.Tensor:
    """normed [T, dim], weights [T, E + S] (0 for experts not chosen) -> [T, dim]: every expert on every
    token, weighted. Two products over the stacks as they are ([E + S, 2 * inter, dim] read as one
    [(E + S) * 2 * inter, dim] matrix), in the model dtype: at these sizes (~17 MFLOP for the gate/up of
    32 tokens) oneDNN's bf16 GEMM is ~3x float32's, and the products round like the module path's.
    The [T, (E + S) * 2 * inter] intermediates live in reused buffers, computed in place."""
    tokens, dim = normed.shape
    x = (normed * w.gain).to(w.gate_up.dtype)
    products, hidden, act = buffers.all_experts(w)
    torch.mm(x, w.gate_up.view(-1, dim).t(), out=products)  # [T, (E + S) * 2 * inter]
    if hidden is not products:
        hidden.copy_(products)
    hidden = hidden.view(tokens, -1, 2, w.inter)
    gate = hidden[:, :, 0]
    F.silu(gate, inplace=True).mul_(hidden[:, :, 1]).mul_(weights.unsqueeze(-1))  # [T, E + S, inter]
    act.copy_(gate)
    return torch.mm(act.view(tokens, -1), w.down_t.view(-1, dim)).float()
