"""Runs one measurement task in a fresh process and prints its result as the last line (JSON).

    python bench/perf/worker.py TASK 'JSON PARAMS'

A fresh process per task makes its peak RSS (ru_maxrss) that task's own, not the whole suite's.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

TASKS = {
    "sampling": "perf.sampling:measure_sampling",
    "sampling_memory": "perf.sampling:measure_sampling_memory",
    "unet": "perf.unet_efficiency:measure_unet",
    "unet_memory": "perf.unet_efficiency:measure_unet_memory",
    "matmul": "perf.unet_efficiency:measure_matmul_peak",
    "training": "perf.training:measure_training",
    "training_memory": "perf.training:measure_training_memory",
    "profile": "perf.profile_sampling:profile_sampling",
}

def main() -> None:
    import torch

    from perf.tasks import RESULT_PREFIX
    from perf.timing import peak_rss_mib

    task, params = sys.argv[1], json.loads(sys.argv[2])
    torch.set_num_threads(params["threads"])
    module_name, function_name = TASKS[task].split(":")
    result = getattr(importlib.import_module(module_name), function_name)(params)
    result["peak_rss_mib"] = round(peak_rss_mib(), 1)
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, so `perf.*` imports
    main()
