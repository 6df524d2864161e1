"""The engine loop: admit requests, schedule a step, run the model, sample, finish."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from gpu_worker.parallel.state import current

from .block_manager import BlockManager
from .config import EngineConfig
from .disk_cache import DiskCache
from .memory_profile import cache_blocks_that_fit
from .model_runner import ModelRunner
from .sampler import OutputCounts, Sampler, SamplingBatch
from .scheduler import Scheduler
from .sequence import SamplingParams, Sequence, TokenLogprob

log = logging.getLogger("gpu_worker.engine")


class PromptTooLong(ValueError):
    pass


@dataclass
class StepOutput:
    seq: Sequence
    new_token_ids: list[int]
    new_logprobs: list[TokenLogprob]
    finished: bool


def model_len_limit(model, config: EngineConfig) -> int:
    """The longest sequence served: --max-model-len, capped by the model's positions."""
    return min(config.max_model_len or 1 << 62, model.config.max_position_embeddings)


def cache_blocks(model, config: EngineConfig, device: torch.device) -> int:
    """--num-cache-blocks, else what a profiled step leaves of the device (CUDA), else 512."""
    if config.num_cache_blocks:
        return config.num_cache_blocks
    if device.type != "cuda":
        return 512
    per_block = ModelRunner.block_bytes(model.config, config.block_size, model.dtype)
    blocks, figures = cache_blocks_that_fit(model, config, model_len_limit(model, config), device,
                                            per_block, uses_cuda_graphs(model, device))
    log.info("cache sized by a profiled step: %s", figures)
    return blocks


def uses_cuda_graphs(model, device: torch.device) -> bool:
    """Whether decode steps replay as CUDA graphs: on CUDA with the Triton kernels, without expert
    parallelism. The torch reference MoE and the all-to-all read expert counts on the host, which
    a graph cannot capture."""
    parallel = current()
    expert_parallel = parallel.expert_parallel and parallel.size > 1
    return device.type == "cuda" and model.kernel_backend == "triton" and not expert_parallel


def build_runner(model, config: EngineConfig, device: torch.device, num_blocks: int) -> ModelRunner:
    """The model runner of every rank of a worker (the follower ranks need nothing else)."""
    max_model_len = min(model_len_limit(model, config), num_blocks * config.block_size)
    return ModelRunner(model, num_blocks, config.block_size, device, config.max_num_seqs,
                       max_model_len, uses_cuda_graphs(model, device))


class LLMEngine:
    def __init__(self, model, config: EngineConfig | None = None, eos_token_ids: tuple[int, ...] = (1,),
                 device: str | torch.device = "cpu"):
        self.config = config = config or EngineConfig()
        self.model = model
        self.device = torch.device(device)
        self.max_model_len = model_len_limit(model, config)
        num_blocks = cache_blocks(model, config, self.device)
        self.runner = build_runner(model, config, self.device, num_blocks)
        self.disk = (DiskCache(config.disk_cache_dir, config.disk_cache_max_bytes)
                     if config.disk_cache_dir else None)
        self.block_manager = BlockManager(num_blocks, config.block_size, config.cache_salt,
                                          self.disk, self.runner)
        self.scheduler = Scheduler(self.block_manager, config.max_batch_tokens, config.max_num_seqs)
        self.sampler = Sampler()
        self.output_counts = OutputCounts(model.config.vocab_size, self.device, config.max_num_seqs)
        self.eos_token_ids = set(eos_token_ids)
        self.sequences: dict[str, Sequence] = {}

    # ---- requests ---------------------------------------------------------------------------
    def add_request(self, request_id: str, prompt_ids: list[int], params: SamplingParams,
                    namespace: str = "") -> Sequence:
        self.check_fits(len(prompt_ids), params.max_tokens)
        if request_id in self.sequences:
            raise ValueError(f"duplicate request id {request_id}")
        seq = self.sequences[request_id] = Sequence(request_id, prompt_ids, params, namespace)
        self.scheduler.add(seq)
        return seq

    @property
    def cache_capacity_tokens(self) -> int:
        return self.block_manager.num_blocks * self.config.block_size

    def check_fits(self, num_prompt_tokens: int, max_tokens: int) -> None:
        total = num_prompt_tokens + max_tokens
        if total > self.max_model_len:
            raise PromptTooLong(
                f"This model's maximum context length is {self.max_model_len} tokens. However, "
                f"you requested {total} tokens ({num_prompt_tokens} in the messages, {max_tokens} "
                "in the completion). Please reduce the length of the messages or completion.")
        capacity = self.cache_capacity_tokens
        if total > capacity:
            raise PromptTooLong(
                f"This request needs {total} tokens of cache but this worker holds {capacity}.")

    def abort(self, request_id: str, reason: str = "abort") -> Sequence | None:
        """Finish a request now and release its cache blocks (full ones stay cached)."""
        seq = self.sequences.get(request_id)
        if seq is not None:
            self._release(seq)
            seq.finish_reason = seq.finish_reason or reason
        return seq

    def _release(self, seq: Sequence) -> None:
        self.sequences.pop(seq.request_id, None)
        self.output_counts.release(seq.request_id)
        self.scheduler.remove(seq)

    # ---- one step ----------------------------------------------------------------------------
    def step(self) -> list[StepOutput]:
        batch = self.scheduler.schedule()
        if not batch:
            return []
        logits = self.runner.run([s.chunk() for s in batch])
        seqs = [s.seq for s in batch if s.samples]
        tokens, logprobs = [], []
        if seqs:
            sampling = SamplingBatch(seqs, logits.device, self.output_counts)
            tokens, logprobs = self.sampler(logits, sampling)
        for s in batch:
            s.seq.num_computed_tokens += s.num_new_tokens
        outputs = []
        for seq, token, logprob in zip(seqs, tokens, logprobs):
            seq.append_token(token)
            p = seq.params
            if not p.ignore_eos and (token in self.eos_token_ids or token in p.stop_token_ids):
                seq.finish_reason = "stop"
            elif seq.num_output_tokens >= p.max_tokens or len(seq) >= self.max_model_len:
                seq.finish_reason = "length"
            outputs.append(StepOutput(seq, [token], [logprob] if logprob else [], seq.is_finished))
        for s in batch:
            self.block_manager.register_full_blocks(s.seq)
            if s.seq.is_finished:
                self._release(s.seq)
        return outputs

    # ---- convenience for tests and benchmarks --------------------------------------------------
    def generate(self, prompts: list[list[int]], params: SamplingParams | list[SamplingParams],
                 namespace: str = "") -> list[Sequence]:
        params = params if isinstance(params, list) else [params] * len(prompts)
        base = len(self.sequences) + id(prompts)
        seqs = [self.add_request(f"gen-{base}-{i}", p, sp, namespace)
                for i, (p, sp) in enumerate(zip(prompts, params))]
        while any(not s.is_finished for s in seqs):
            self.step()
        return seqs

    def shutdown(self) -> None:
        """Keep the prefix cache for the next worker: spill cached blocks to the disk tier."""
        if self.disk is not None:
            self.block_manager.spill_all()
            self.disk.flush()

    def stats(self) -> dict:
        bm = self.block_manager
        return {
            "running": len(self.scheduler.running),
            "waiting": len(self.scheduler.waiting),
            "free_cache_blocks": bm.num_free_blocks,
            "total_cache_blocks": bm.num_blocks,
            "cache": {"block_size": bm.block_size, "cached_blocks": len(bm.key_to_block),
                      **bm.stats,
                      "disk_blocks": len(self.disk) if self.disk else 0,
                      "disk_bytes": self.disk.total_bytes if self.disk else 0},
        }
