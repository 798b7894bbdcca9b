"""Start a worker process for one task and read back its JSON result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
SRC = BENCH.parent / "src"
RESULT_PREFIX = "RESULT "


def run_task(task: str, params: dict, log=print) -> dict:
    """Run `task` in a fresh Python; its stderr passes through, its last stdout line is the result."""
    env = dict(os.environ, OMP_NUM_THREADS=str(params["threads"]), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error",
               HF_HUB_DISABLE_PROGRESS_BARS="1",
               PYTHONPATH=os.pathsep.join([str(SRC), str(BENCH), os.environ.get("PYTHONPATH", "")]))
    log(f"[bench] {task} {json.dumps({k: v for k, v in params.items() if k != 'threads'})}")
    done = subprocess.run([sys.executable, str(BENCH / "perf" / "worker.py"), task, json.dumps(params)],
                          env=env, stdout=subprocess.PIPE, text=True)
    results = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not results:
        raise RuntimeError(f"bench task {task} failed (exit {done.returncode}); its output:\n{done.stdout[-3000:]}")
    return json.loads(results[-1][len(RESULT_PREFIX):])
