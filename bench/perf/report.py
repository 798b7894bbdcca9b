"""docs/performance.md from the sections' JSON results: tables first, then how each was measured."""

from __future__ import annotations

from perf.variants import default_path_name

TARGETS = {"sampling": 3.0, "unet_bf16_fraction": 0.5, "training": 3.0}


def spread(summary: dict, scale: float = 1.0, digits: int = 3) -> str:
    """median (min–max) of a timing summary, scaled (e.g. 1e3 for ms)."""
    f = lambda x: f"{x * scale:.{digits}g}"
    return f"{f(summary['median'])} ({f(summary['min'])}–{f(summary['max'])})"


def table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
            *["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]]


def machine_lines(machine: dict, settings: dict) -> list[str]:
    v = machine["versions"]
    return [
        f"- CPU: {machine['cpu']}; {machine['cores']} cores; flags: {', '.join(machine['flags']) or 'none of interest'}",
        f"- threads per measurement: {machine['threads']}; load average at start: "
        f"{', '.join(map(str, machine['load_average']))}; kernel {machine['kernel']}",
        f"- python {v['python']}, torch {v['torch']}, diffusers {v['diffusers']}, transformers {v['transformers']}, "
        f"onnxruntime {v['onnxruntime']}, openvino {v.get('openvino', 'not recorded')}",
        f"- model: `{settings['model_name']}`; date: {settings['date']}",
    ]


def summary_lines(results: dict) -> list[str]:
    rows = []
    sampling = results.get("sampling")
    default = default_path_name()
    if sampling:
        batch = str(max(int(b) for b in sampling["batches"]))
        by_path = {name: r["speedup_vs_diffusers"]["median"] for name, r in sampling["batches"][batch].items()
                   if r.get("speedup_vs_diffusers")}
        fastest = max(by_path, key=by_path.get)
        for name in dict.fromkeys([default, fastest]):
            label = "default" if name == default else "fastest"
            rows.append([f"sampling, batch {batch}: Marble (`{name}`, {label}) ÷ diffusers images/s",
                         f"{by_path[name]:.2f}×", f"≥ {TARGETS['sampling']:.0f}×", _verdict(by_path[name], TARGETS["sampling"])])
    unet, peak = results.get("unet"), results.get("matmul")
    if unet and peak:
        # The measure is batch 16; a run without it reports its largest batch.
        batch = "16" if "16" in unet["batches"] else str(max(int(b) for b in unet["batches"]))
        paths = unet["batches"][batch]["paths"]
        fastest, _ = _fastest_path(paths)
        for name in dict.fromkeys(n for n in (default, fastest) if n in paths):
            label = "default" if name == default else "fastest"
            fraction = paths[name]["gflops_median"] / peak["bf16"]["peak_gflops"]
            rows.append([f"U-Net forward, batch {batch} (`{name}`, {label}) ÷ bf16 matmul peak", f"{fraction:.0%}",
                         f"≥ {TARGETS['unet_bf16_fraction']:.0%}", _verdict(fraction, TARGETS["unet_bf16_fraction"])])
    training = results.get("training")
    speedups = (training or {}).get("speedups") or ({"marble": training["speedup"]} if (training or {}).get("speedup") else {})
    for name, speedup in speedups.items():
        ratio = speedup["median"]
        rows.append([f"training, batch {training['batch']}: `{name}` ÷ diffusers-style steps/s", f"{ratio:.2f}×",
                     f"≥ {TARGETS['training']:.0f}×", _verdict(ratio, TARGETS["training"])])
    return table(["measure", "result", "target", "reached"], rows) if rows else ["(no ratio measured)"]


def _verdict(value: float, target: float) -> str:
    return "yes" if value >= target else f"no: {value / target:.0%} of the target"


def _fastest_path(paths: dict) -> tuple[str, dict]:
    return max(paths.items(), key=lambda item: item[1]["gflops_median"])


def sampling_lines(sampling: dict, memory: dict, settings: dict) -> list[str]:
    default = default_path_name()
    lines = [f"Prompt `{settings['prompt']}`, sampler `{settings['sampler']}`, {settings['sampling_steps']} steps, "
             f"guidance {settings['guidance']}, seed {settings['seed']}; {settings['sampling_rounds']} interleaved rounds. "
             f"Marble's default path is `{default}`. Pixel difference: largest |Marble − diffusers| over all images, "
             "in 0–255 levels, against diffusers' float output before its rounding (0.5 = the same uint8 image).", ""]
    for batch, paths in sampling["batches"].items():
        rows = [[f"`{name}`" + (" (default)" if name == default else ""), spread(r["seconds"]),
                 f"{r['images_per_second']:.2f}", f"{spread(r['speedup_vs_diffusers'], digits=3)}×",
                 f"{r['max_level_difference']:.2f}", f"{r['first_call_seconds']:.1f}", _memory(memory, name)]
                for name, r in paths.items()]
        lines += [f"**batch {batch}**", "", *table(
            ["path", "s per call, median (min–max)", "images/s", "speed-up vs diffusers, paired (min–max)",
             "max pixel diff", "first call s", "peak RSS MiB"], rows), ""]
    return lines


def _memory(memory: dict, name: str) -> str:
    found = memory.get(name)
    if not found:
        return "–"
    loaded = found.get("rss_after_load_mib")
    return f"{found['peak_rss_mib']:.0f}" + (f" (after load {loaded:.0f})" if loaded else "")


def unet_lines(unet: dict, peak: dict, memory: dict) -> list[str]:
    lines = [f"Matmul {peak['n']}² peak (best of the rounds): fp32 {peak['fp32']['peak_gflops']:.0f} GFLOP/s, "
             f"bf16 {peak['bf16']['peak_gflops']:.0f} GFLOP/s (medians {peak['fp32']['median_gflops']:.0f} and "
             f"{peak['bf16']['median_gflops']:.0f}).", ""]
    for batch, found in unet["batches"].items():
        per_image = found["flops"] / int(batch) / 1e9
        rows = [[f"`{name}`", spread(r["seconds"], 1e3), f"{r['gflops_median']:.1f}", f"{r['gflops_best']:.1f}",
                 f"{r['gflops_median'] / peak['bf16']['peak_gflops']:.0%}",
                 f"{r['gflops_median'] / peak['fp32']['peak_gflops']:.0%}", _memory(memory, name)]
                for name, r in found["paths"].items()]
        lines += [f"**batch {batch}** ({per_image:.2f} GFLOP per image)", "", *table(
            ["path", "ms per forward, median (min–max)", "GFLOP/s (median)", "GFLOP/s (best)", "of bf16 peak",
             "of fp32 peak", "peak RSS MiB"], rows), ""]
    compiled = {k: v for k, v in unet.get("compile_seconds", {}).items() if v}
    if compiled:
        lines += ["One-off costs (compile, ONNX export and session): " +
                  ", ".join(f"`{k}` {v:.1f} s" for k, v in compiled.items()), ""]
    return lines


def training_lines(training: dict, memory: dict) -> list[str]:
    loops = training["loops"]
    rows = [[name, spread(r["step_seconds"]), f"{r['steps_per_second']:.3f}", _memory(memory, name)]
            for name, r in loops.items()]
    lines = [f"Batch {training['batch']}, {training['data']}; rounds of {training['steps_per_round']} steps, "
             "alternating; per-step seconds from each loop's own clock.", "", *table(
                 ["loop", "s per step, median (min–max)", "steps/s", "peak RSS MiB"], rows), ""]
    speedups = training.get("speedups") or ({"marble": training["speedup"]} if training.get("speedup") else {})
    for name, speedup in speedups.items():
        lines.append(f"- `{name}` ÷ diffusers-style, median of per-round ratios: {spread(speedup)}×.")
    if "marble" in loops:
        lines.append(f"- Marble's one-off caching of latents and contexts took {loops['marble']['cache_seconds']:.1f} s.")
    if "marble-compiled" in loops:
        lines.append(f"- `marble-compiled` is the same loop with `unet.train.compile` (torch.compile); compiling took "
                     f"about {loops['marble-compiled']['first_round_extra_seconds']:.0f} s, paid once per run.")
    return lines


def quality_lines(stages: list[dict], evaluation: dict | None, metrics_path: str) -> list[str]:
    rows = [[s["stage"], s["steps"], f"{s['seconds'] / 60:.1f}", f"{(s['parameters'] or 0) / 1e6:.1f} M"] for s in stages]
    total = sum(s["seconds"] for s in stages) / 60
    lines = [*table(["stage", "steps", "minutes", "parameters"], rows + [["all", "", f"{total:.1f}", ""]]), ""]
    if evaluation is None:
        lines.append(f"FD and CLIP score: **not yet measured** — this row reads `{metrics_path}` (the `metrics.json` "
                     "of `marble eval reference ...`); rerun the suite once it exists.")
        return lines
    for name, (fd, floor, count) in evaluation["fd"].items():
        lines.append(f"- FD[{name}] {fd:.4g} (floor between two real sets {floor:.4g}), N = {count}")
    if evaluation["clip_score"]:
        generated, real, count = evaluation["clip_score"]
        lines.append(f"- CLIP score {generated:.4g} (real images {real:.4g}), N = {count}")
    lines.append(f"- from `{metrics_path}`")
    return lines


def profile_lines(profiles: dict) -> list[str]:
    lines = []
    for name, found in profiles["paths"].items():
        rows = [[f"`{op['op']}`", f"{op['self_ms']:.1f}", f"{op['share']:.1%}", op["calls"]] for op in found["ops"]]
        lines += [f"**`{name}`**, one generate call of batch {found['batch']}: {found['total_ms'] / 1e3:.2f} s of "
                  "self CPU time in all", "", *table(["operator", "self CPU ms", "share", "calls"], rows), ""]
    return lines


def _unet_ms(unet: dict, batch: str, name: str) -> float | None:
    found = unet["batches"].get(batch, {}).get("paths", {}).get(name)
    return found["seconds"]["median"] * 1e3 if found else None


PATH_NOTES = {
    "onnx": "the U-Net and the decoder exported once to `RUN/cache/<unet|decoder>-<weights hash>.onnx` and run by "
            "ONNX Runtime in fp32: the same images as diffusers to rounding",
    "openvino": "the same exported graphs compiled by OpenVINO's CPU plugin once per batch size (static shapes), "
                "an even batch split over two streams, with OpenVINO's own precision choice (bf16 on CPUs with AMX or "
                "AVX-512 BF16, fp32 elsewhere); its FD and CLIP score at N = 1000 equal the eager-decoder path's "
                "within run-to-run noise, which equalled the fp32 path's ([evaluation.md](evaluation.md))",
    "openvino-fp32": "the exported graph in OpenVINO, fp32 asked for",
    "openvino-int8": "that graph quantized to int8 by NNCF, calibrated by sampling the run's 16 calibration prompts "
                     "(the input and output convolutions and the time embedding stay float); not the default: "
                     "at N = 1000 it moves FD beyond run-to-run noise ([evaluation.md](evaluation.md))",
    "fp32": "eager PyTorch fp32: the arithmetic diffusers runs",
    "bf16": "eager PyTorch under bf16 autocast",
    "fp32+channels_last": "eager fp32, channels_last memory format",
    "bf16+channels_last": "eager bf16 autocast, channels_last memory format",
}


def choices_lines(results: dict, machine: dict | None = None) -> list[str]:
    """Each path with this run's U-Net medians (batch 1 and largest) and sampling ratio; the default first."""
    unet = results.get("unet")
    if not unet:
        return ["(the U-Net section did not run: no numbers to choose by)"]
    batches = sorted(int(b) for b in unet["batches"])
    small, large = str(batches[0]), str(batches[-1])
    ms = lambda batch, name: (f"{_unet_ms(unet, batch, name):.0f} ms" if _unet_ms(unet, batch, name) else "–")
    default = default_path_name()
    flags = set((machine or {}).get("flags", []))
    lines = [f"CPU bf16 units: {'AMX' if 'amx_bf16' in flags else 'AVX-512 BF16 only (no AMX)' if 'avx512_bf16' in flags else 'none'}. "
             f"U-Net forward medians at batch {small} and {large}; sampling speed-up over diffusers at the largest "
             "sampling batch, with the largest pixel difference to diffusers' images.", ""]
    sampling = results.get("sampling", {}).get("batches", {})
    top = sampling.get(str(max((int(b) for b in sampling), default=0)), {})
    for name in sorted((n for n in unet["batches"][large]["paths"] if n != "compile"), key=lambda n: n != default):
        measured = top.get(name)
        speed = (f"; sampling {measured['speedup_vs_diffusers']['median']:.2f}× diffusers, pixels within "
                 f"{measured['max_level_difference']:.1f} levels" if measured else "")
        label = "**Default**: " if name == default else ""
        lines.append(f"- {label}`{name}` — {PATH_NOTES.get(name, name)}: {ms(small, name)} at batch {small}, "
                     f"{ms(large, name)} at batch {large}{speed}.")
    compiled = unet.get("compile_seconds", {}).get("compile")
    if compiled:
        lines.append(f"- `compile` (`--compile`): torch.compile (inductor) with `auto` precision, "
                     f"{ms(small, 'compile')} at batch {small}, {ms(large, 'compile')} at batch {large} after "
                     f"{compiled:.0f} s of compiling, paid again in every new process and batch shape.")
    lines += [
        "- **Guidance in one batched call**: the unconditional and conditional latents go through the U-Net "
        "together, once per step (as diffusers does); both halves' text contexts are encoded once per request.",
        "- **Prompt-context cache**: an LRU of 256 prompt → context entries (`ContextCache`); the empty negative "
        "prompt and a server's repeated prompts skip the text encoder.",
        "- The library default (`MarblePipeline.load(run)`) stays eager fp32: exact, no export, no cache files.",
    ]
    return lines


def _share(profile: dict, match) -> float:
    return sum(op["share"] for op in profile["ops"] if match(op["op"]))


def _sampling_ceiling_lines(unet: dict, peak: dict, batch: str) -> list[str]:
    """How fast sampling could get at bf16: the U-Net's counted FLOPs at the bf16 matmul peak, against the
    eager fp32 forward diffusers runs at the same batch (a guided batch of n images is a U-Net batch of 2n)."""
    measured = unet["batches"][batch]
    fp32_ms, default_ms = _unet_ms(unet, batch, "fp32"), _unet_ms(unet, batch, default_path_name())
    if not fp32_ms or not default_ms:
        return []
    floor_ms = measured["flops"] / (peak["bf16"]["peak_gflops"] * 1e9) * 1e3
    lines = [f"- The bf16 ceiling: a U-Net call at batch {batch} is {measured['flops'] / 1e9:.1f} GFLOP, "
             f"{floor_ms:.0f} ms at this CPU's bf16 matmul peak, against {fp32_ms:.0f} ms for the eager fp32 forward "
             f"diffusers runs. A U-Net at 100% of the peak would therefore be {fp32_ms / floor_ms:.2f}× diffusers' at "
             f"most, before the decoder and scheduler that both pipelines pay; the default path's U-Net takes "
             f"{default_ms:.0f} ms ({fp32_ms / default_ms:.2f}×)."]
    int8_ms = _unet_ms(unet, batch, "openvino-int8")
    if int8_ms:
        lines.append(f"- Only cheaper arithmetic passes that ceiling: `openvino-int8` takes {int8_ms:.0f} ms "
                     f"({fp32_ms / int8_ms:.2f}× the eager fp32 forward), but moves FD beyond run-to-run noise, "
                     "so it stays an option ([evaluation.md](evaluation.md)). Its share of the bf16 peak counts "
                     "int8 work against a bf16 yardstick (VNNI does twice the multiply-adds per instruction), so "
                     "the default path's row is the one the target means.")
    return lines


def analysis_lines(results: dict) -> list[str]:
    """Where the time goes, from this run's profile and U-Net tables: what stands between us and the targets."""
    lines = []
    profile = results.get("profile", {}).get("paths", {})
    default = default_path_name()
    if default in profile:
        found = profile[default]
        unet = _share(found, lambda op: op.startswith("unet ("))
        decoder = _share(found, lambda op: op.startswith("decoder (") or "conv" in op)
        lines.append(f"- Sampling on the default path (batch {found['batch']}): the U-Net's graph runtime is "
                     f"{unet:.0%} of the self CPU time; the decoder (its exported graph, or aten convolutions where "
                     f"it runs eagerly) {decoder:.0%}; the rest is the scheduler, text encoder and tensor "
                     "glue. " + ("The U-Net's speed is what sets the sampling ratio." if unet >= 0.5 else
                                 "The decoder, run once per image, is a large share at these few steps."))
    if "fp32" in profile:
        found = profile["fp32"]
        top = ", ".join(f"`{op['op']}` {op['share']:.0%}" for op in found["ops"][:4])
        lines.append(f"- On the eager fp32 path (what diffusers runs) the top operators are {top}: convolutions "
                     "of 64–128 channels on 16×16 and smaller latents, where each kernel call is short, so the "
                     "fixed cost of each of the hundreds of operators in a U-Net call weighs heavily.")
    unet, peak = results.get("unet"), results.get("matmul")
    if unet and peak:
        batch = str(max(int(b) for b in unet["batches"]))
        paths = unet["batches"][batch]["paths"]
        name = default_path_name() if default_path_name() in paths else _fastest_path(paths)[0]
        best = paths[name]
        lines.append(f"- U-Net at batch {batch}: the default path (`{name}`) reaches {best['gflops_median']:.0f} "
                     f"GFLOP/s, {best['gflops_median'] / peak['fp32']['peak_gflops']:.0%} of the fp32 and "
                     f"{best['gflops_median'] / peak['bf16']['peak_gflops']:.0%} of the bf16 matmul peak. The "
                     "counted FLOPs are convolutions and matmuls only; group norms, SiLU, attention softmax and "
                     "up/down-sampling take time without counting, and the GEMMs are small (K = 64–128 × 9 "
                     "for a 3×3 convolution), well below the sizes where a CPU reaches its matmul peak.")
        lines += _sampling_ceiling_lines(unet, peak, batch)
    training = results.get("training")
    if training and training.get("speedup"):
        lines.append(f"- Training: the diffusers-style loop pays for the VAE encoder and the text encoder every "
                     f"step; Marble pays once ({training['loops']['marble']['cache_seconds']:.0f} s for these "
                     "images) and then only for the U-Net's forward and backward under bf16 autocast, with attention as "
                     "plain matmuls (the backward of PyTorch's fused CPU attention kernel took 37% of a bf16 step). "
                     "The ratio is "
                     "therefore about (encoders + U-Net step) ÷ U-Net step: it grows with image size and "
                     "encoder cost, not with anything left in Marble's loop.")
        compiled = training["loops"].get("marble-compiled")
        if compiled:
            lines.append(f"- `unet.train.compile` (torch.compile) fuses the norms, activations and elementwise glue "
                         f"around the convolutions: {compiled['step_seconds']['median']:.2f} s per step against "
                         f"{training['loops']['marble']['step_seconds']['median']:.2f} s, after about "
                         f"{compiled['first_round_extra_seconds']:.0f} s of compiling once per run (and per resume).")
    return lines or ["(no section ran that this reads)"]
