"""What the numbers were measured on: CPU, its vector/matrix flags, cores, threads, library versions, load."""

from __future__ import annotations

import importlib
import os
import platform
from pathlib import Path

FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "amx_tile", "amx_bf16",
                     "amx_int8")


def cpuinfo() -> dict:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return {"model": fields.get("model name", platform.processor() or platform.machine()),
            "flags": [flag for flag in FLAGS_OF_INTEREST if flag in flags]}


def versions() -> dict:
    import diffusers
    import torch
    import transformers

    found = {"python": platform.python_version(), "torch": torch.__version__, "diffusers": diffusers.__version__,
             "transformers": transformers.__version__}
    for runtime in ("onnxruntime", "openvino"):
        try:
            found[runtime] = importlib.import_module(runtime).__version__.split("-")[0]
        except ImportError:
            found[runtime] = "not installed"
    return found


def machine_info(threads: int) -> dict:
    cpu = cpuinfo()
    return {"cpu": cpu["model"], "flags": cpu["flags"], "cores": os.cpu_count(), "threads": threads,
            "load_average": [round(x, 2) for x in os.getloadavg()], "versions": versions(),
            "kernel": platform.release()}
