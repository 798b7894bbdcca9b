"""Interleaved timing (ABAB…: background load hits every variant alike), robust summaries, peak RSS."""

from __future__ import annotations

import resource
import statistics
import time
from typing import Callable


def interleaved(variants: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each variant per round; within a round every variant runs once, in order."""
    for _ in range(warmup):
        for run in variants.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return times


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(q1, median, q3); with fewer than 4 values q1/q3 are the min/max."""
    ordered = sorted(values)
    if len(ordered) < 4:
        return ordered[0], statistics.median(ordered), ordered[-1]
    q1, median, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    return q1, median, q3


def summarize(values: list[float]) -> dict:
    q1, median, q3 = quartiles(values)
    return {"median": median, "min": min(values), "max": max(values), "q1": q1, "q3": q3, "n": len(values)}


def paired_ratio(slow: list[float], fast: list[float]) -> dict:
    """Median of per-round ratios slow/fast: each pair ran back to back, so load changes cancel."""
    return summarize([s / f for s, f in zip(slow, fast)])


def peak_rss_mib() -> float:
    """The process's peak resident set size so far (Linux ru_maxrss is in KiB): all of torch's allocations."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20
