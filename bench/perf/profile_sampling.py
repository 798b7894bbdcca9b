"""Where sampling time goes: torch.profiler's top operators by self CPU time for one generate call."""

from __future__ import annotations

from pathlib import Path

from torch.profiler import ProfilerActivity, profile

from marble.pipeline import MarblePipeline
from perf.sampling import request_for
from perf.variants import PATHS


def profile_sampling(params: dict) -> dict:
    found = {}
    for name in params["paths"]:
        pipeline = MarblePipeline.load(Path(params["model"]), PATHS[name])
        pipeline.cache_dir = Path(params["cache_dir"])
        request = request_for(params, max(params["batches"]))
        pipeline.generate(request)  # warm-up: caches, export, first-call allocations
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            pipeline.generate(request)
        events = profiler.key_averages()
        total = sum(event.self_cpu_time_total for event in events)
        top = sorted(events, key=lambda event: event.self_cpu_time_total, reverse=True)[:params["top"]]
        found[name] = {"batch": request.num_images, "total_ms": total / 1e3, "ops": [
            {"op": event.key, "self_ms": event.self_cpu_time_total / 1e3, "share": event.self_cpu_time_total / total,
             "calls": event.count} for event in top]}
    return {"paths": found}
