"""Counters for GET /metrics, in Prometheus text format."""
from __future__ import annotations

from collections import Counter

from .usage_log import UsageLog


class Metrics:
    def __init__(self):
        self.requests: Counter[tuple[str, str, str]] = Counter()  # (endpoint, model, finish_reason)
        self.prompt_tokens = Counter()
        self.cached_prompt_tokens = Counter()
        self.completion_tokens = Counter()
        self.rejected: Counter[str] = Counter()  # by HTTP status
        self.ttft_sum = 0.0
        self.ttft_count = 0
        self.usage_log = UsageLog()  # per request, for GET /v1/usage (reconciliation)

    def record(self, request_id: str | None, endpoint: str, model: str, finish_reason: str,
               usage) -> None:
        self.requests[(endpoint, model, finish_reason)] += 1
        self.prompt_tokens[model] += usage.prompt_tokens
        self.cached_prompt_tokens[model] += usage.cached_tokens
        self.completion_tokens[model] += usage.completion_tokens
        self.usage_log.record(request_id, endpoint, model, finish_reason, usage)

    def render(self, engine_stats: dict, draining: bool, ranks: list[dict] | None = None) -> str:
        lines = []

        def metric(name, kind, help_, samples):
            name = f"gpu_worker_{name}"
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                label = ",".join(f'{k}="{v}"' for k, v in labels.items())
                lines.append(f"{name}{{{label}}} {value}" if label else f"{name} {value}")

        metric("requests_total", "counter", "Finished requests.",
               [({"endpoint": e, "model": m, "finish_reason": f}, n)
                for (e, m, f), n in sorted(self.requests.items())])
        metric("rejected_requests_total", "counter",
               "Requests refused before generation, by status.",
               [({"status": s}, n) for s, n in sorted(self.rejected.items())])
        for name, counter, help_ in (
                ("prompt_tokens", self.prompt_tokens, "Prompt tokens."),
                ("prompt_cache_hit_tokens", self.cached_prompt_tokens,
                 "Prompt tokens served from the prefix cache."),
                ("completion_tokens", self.completion_tokens, "Generated tokens.")):
            metric(f"{name}_total", "counter", help_,
                   [({"model": m}, n) for m, n in sorted(counter.items())])
        metric("time_to_first_token_seconds_sum", "counter", "Sum of time to first token.",
               [({}, round(self.ttft_sum, 6))])
        metric("time_to_first_token_seconds_count", "counter", "Requests with a first token.",
               [({}, self.ttft_count)])
        cache = engine_stats["cache"]
        for name, value, help_ in (
                ("running_requests", engine_stats["running"], "Requests being generated."),
                ("waiting_requests", engine_stats["waiting"], "Requests queued for a slot."),
                ("free_cache_blocks", engine_stats["free_cache_blocks"],
                 "Free or evictable 64-token cache blocks."),
                ("total_cache_blocks", engine_stats["total_cache_blocks"], "Cache blocks on the device."),
                ("prefix_cached_blocks", cache["cached_blocks"], "Device blocks holding a reusable prefix."),
                ("disk_cache_blocks", cache["disk_blocks"], "Blocks in the disk tier."),
                ("disk_cache_bytes", cache["disk_bytes"], "Bytes in the disk tier."),
                ("draining", int(draining), "1 while finishing requests before exit.")):
            metric(name, "gauge", help_, [({}, value)])
        for name in ("evicted_blocks", "spilled_blocks", "disk_hit_blocks"):
            metric(f"{name}_total", "counter", f"Prefix cache {name.replace('_', ' ')}.",
                   [({}, cache[name])])
        if ranks is not None:  # a tensor-parallel worker: one sample per rank
            metric("rank_up", "gauge", "1 while the rank runs and reports.",
                   [({"rank": r["rank"]}, int(r["alive"])) for r in ranks])
            metric("rank_steps_total", "counter", "Model steps a follower rank replayed.",
                   [({"rank": r["rank"]}, r["steps"]) for r in ranks if "steps" in r])
            metric("rank_memory_allocated_bytes", "gauge", "Device memory the rank's tensors hold.",
                   [({"rank": r["rank"]}, r["memory_allocated_bytes"])
                    for r in ranks if "memory_allocated_bytes" in r])
        return "\n".join(lines) + "\n"
