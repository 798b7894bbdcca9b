"""The inference paths the suite compares, by name; the product default is marked."""

from __future__ import annotations

from marble.inference.options import EXACT, FASTEST, InferenceOptions

PATHS = {
    "fp32": EXACT,
    "bf16": InferenceOptions(precision="bf16"),
    "auto": InferenceOptions(precision="auto"),
    "bf16+channels_last": InferenceOptions(precision="bf16", channels_last=True),
    "fp32+channels_last": InferenceOptions(channels_last=True),
    "onnx": InferenceOptions(precision="auto", backend="onnx"),  # auto: fp32 under onnx
    "openvino": InferenceOptions(precision="auto", backend="openvino"),  # bf16 where the CPU has it; FASTEST's spelling
    "openvino-fp32": InferenceOptions(precision="fp32", backend="openvino"),
    "openvino-int8": InferenceOptions(precision="int8", backend="openvino"),  # quantized on the run's calibration prompts
    "compile": InferenceOptions(precision="auto", compile=True),
}


def default_path_name() -> str:
    """The PATHS name of what `marble generate` runs unless told otherwise."""
    found = [name for name, options in PATHS.items() if options == FASTEST]
    if not found:
        raise RuntimeError(f"the default inference options {FASTEST} are none of the bench's paths: add them")
    return found[0]
