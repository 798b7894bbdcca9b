"""Inference settings: which numeric path runs the U-Net while sampling (docs/performance.md measures each)."""

from __future__ import annotations

from dataclasses import dataclass

from marble.errors import MarbleError

PRECISIONS = ("auto", "fp32", "bf16", "int8")
BACKENDS = ("torch", "onnx", "openvino")
# "auto" runs bf16 autocast from this U-Net batch on (guidance doubles the image count): below it,
# casting weights and activations costs more than bf16 saves (docs/performance.md, U-Net table).
BF16_MIN_BATCH = 8


@dataclass(frozen=True)
class InferenceOptions:
    """precision: fp32, bf16, auto or int8 (openvino only: the graph quantized on the run's calibration prompts); backend: torch (eager or compiled, bf16 by autocast), onnx (ONNX Runtime,
    fp32 only) or openvino (the same exported graph in OpenVINO; auto: bf16 where the CPU has it)."""

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    backend: str = "torch"

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise MarbleError(f"precision: unknown {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.backend not in BACKENDS:
            raise MarbleError(f"backend: unknown {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        # "auto" is allowed with onnx (it means fp32 there), so --backend alone switches paths.
        if self.backend == "onnx" and (self.precision == "bf16" or self.compile or self.channels_last):
            raise MarbleError("backend onnx runs the exported fp32 graph: it takes no --precision bf16, "
                              "--compile or --channels-last")
        if self.precision == "int8" and self.backend != "openvino":
            raise MarbleError("precision int8 is OpenVINO's quantized graph: choose --backend openvino with it")
        if self.backend == "openvino" and (self.compile or self.channels_last):
            raise MarbleError("backend openvino compiles the exported graph itself: it takes no --compile or --channels-last")

    def bf16_at(self, batch: int) -> bool:
        """Whether a U-Net call on `batch` latents runs under bf16 autocast."""
        if self.backend != "torch":
            return False
        return self.precision == "bf16" or (self.precision == "auto" and batch >= BF16_MIN_BATCH)


EXACT = InferenceOptions()  # fp32 eager: the same arithmetic as diffusers, pixel for pixel
# What `marble generate` and `marble serve` use unless told: the U-Net exported to ONNX and compiled by
# OpenVINO, which picks bf16 on CPUs with AMX or AVX-512 BF16 and fp32 elsewhere. On the AMX machine it
# is the fastest path at batch 1 and 16, and its FD and CLIP score at N = 1000 equal the fp32 path's
# within their run-to-run spread (docs/evaluation.md, speed in docs/performance.md); with --backend torch, "auto" picks bf16 where
# it is faster.
FASTEST = InferenceOptions(precision="auto", backend="openvino")
