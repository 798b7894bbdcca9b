"""Marble's performance beside diffusers on the same weights, one command, into docs/performance.md.

    python bench/performance.py [--quick] [--model reference|RUN] [--out docs/performance.md]
                                [--threads N] [--data DIR] [--compile] [--eval-metrics PATH]

Sections: sampling (Marble's generate vs StableDiffusionPipeline loaded from Marble's diffusers export),
U-Net efficiency (FlopCounterMode GFLOP/s vs the matmul peak measured in the same run), training
(Marble's cached U-Net stage vs a diffusers-style loop), time to quality (the run's logs and its
evaluation), and a torch.profiler table of where sampling spends its time. Every measurement runs in
a fresh process (its own peak RSS); compared paths alternate round by round (ABAB) in one process.
"""

from __future__ import annotations

import argparse
import json
import datetime
import os
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent / "src")]

from perf import report  # noqa: E402
from perf.machine import machine_info  # noqa: E402
from perf.quality import evaluation_numbers, stage_times  # noqa: E402
from perf.tasks import run_task  # noqa: E402
from perf.variants import default_path_name  # noqa: E402

QUICK = dict(sampling_steps=10, sampling_batches=[1, 4], sampling_rounds=3, unet_batches=[1, 16], unet_rounds=5,
             matmul_size=2048, train_batch=16, train_images=128, train_steps_per_round=2, train_rounds=3, top_ops=12)
FULL = dict(sampling_steps=30, sampling_batches=[1, 16], sampling_rounds=5, unet_batches=[1, 16, 32], unet_rounds=10,
            matmul_size=4096, train_batch=64, train_images=512, train_steps_per_round=5, train_rounds=5, top_ops=15)
# Only proves the suite runs end to end (a minute or two); its numbers mean nothing.
SMOKE = dict(sampling_steps=2, sampling_batches=[1, 2], sampling_rounds=1, unet_batches=[1, 2], unet_rounds=1,
             matmul_size=256, train_batch=4, train_images=16, train_steps_per_round=1, train_rounds=1, top_ops=5)
SAMPLING_PATHS = ["fp32", "bf16", "onnx", "openvino", "openvino-fp32", "openvino-int8"]
UNET_PATHS = ["fp32", "bf16", "fp32+channels_last", "bf16+channels_last", "onnx", "openvino", "openvino-fp32",
              "openvino-int8"]
PROMPT = "smiling face with heart eyes"
DEFAULT_DATA = Path("data/emoji")
DEFAULT_METRICS = Path("docs/evaluation/reference/metrics.json")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps, rounds and smaller batches: minutes, not an hour")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="reference", help="run folder, or 'reference' (the shipped emoji model)")
    parser.add_argument("--out", type=Path, default=Path("docs/performance.md"))
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch/ONNX Runtime threads (default: all cores)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="image folder for the training section "
                        "(synthetic images when it does not exist)")
    parser.add_argument("--compile", action="store_true",
                        help="also measure torch.compile on the U-Net forward, with its compile time (slow to build)")
    parser.add_argument("--eval-metrics", type=Path, default=DEFAULT_METRICS,
                        help=f"metrics.json of `marble eval` on the model (default {DEFAULT_METRICS})")
    parser.add_argument("--preset-run", type=Path, metavar="RUN",
                        help="a run of `marble train all --preset emoji` in one go: its stage times beside the model's")
    parser.add_argument("--preset-metrics", type=Path, metavar="PATH", help="metrics.json of `marble eval` on --preset-run")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="only rewrite --out from the .json a previous run wrote beside it")
    parser.add_argument("--sections", default="sampling,unet,training,quality,profile")
    return parser.parse_args(argv)


def with_default(paths: list[str], compile_too: bool) -> list[str]:
    chosen = list(dict.fromkeys([default_path_name(), *paths]))
    return chosen + ["compile"] if compile_too else chosen


def sampling_section(settings: dict, common: dict) -> dict:
    params = {**common, "steps": settings["sampling_steps"], "batches": settings["sampling_batches"],
              "rounds": settings["sampling_rounds"], "paths": with_default(SAMPLING_PATHS, False)}
    timings = run_task("sampling", params)
    memory = {path: run_task("sampling_memory", {**params, "path": path}) for path in ["diffusers", *params["paths"]]}
    return {"sampling": timings, "sampling_memory": memory}


def unet_section(settings: dict, common: dict) -> dict:
    params = {**common, "batches": settings["unet_batches"], "rounds": settings["unet_rounds"],
              "paths": with_default(UNET_PATHS, settings["compile"]), "matmul_size": settings["matmul_size"]}
    return {"matmul": run_task("matmul", params), "unet": run_task("unet", params),
            "unet_memory": {path: run_task("unet_memory", {**params, "path": path}) for path in params["paths"]}}


def training_section(settings: dict, common: dict) -> dict:
    params = {**common, "batch": settings["train_batch"], "images": settings["train_images"],
              "steps_per_round": settings["train_steps_per_round"], "rounds": settings["train_rounds"],
              "loops": ["marble", "marble-compiled", "diffusers-style"]}
    # Not the compiled loop's memory: its own process would compile again, for minutes.
    memory = {path: run_task("training_memory", {**params, "rounds": 1, "path": path})
              for path in params["loops"] if path != "marble-compiled"}
    return {"training": run_task("training", params), "training_memory": memory}


def profile_section(settings: dict, common: dict) -> dict:
    params = {**common, "steps": settings["sampling_steps"], "batches": [max(settings["sampling_batches"])],
              "paths": list(dict.fromkeys([default_path_name(), "fp32"])), "top": settings["top_ops"]}
    return {"profile": run_task("profile", params)}


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.render:
        raw = json.loads(args.render.read_text())
        args.out.write_text(render(raw["machine"], raw["settings"], raw["results"], args))
        return
    for name, value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}.items():
        os.environ.setdefault(name, value)  # offline, and no per-file loading bars in the log
    from marble.cli import resolve_model
    from marble.export.diffusers_folder import export_diffusers

    run_dir = resolve_model(args.model).resolve()
    settings = {**(SMOKE if args.smoke else QUICK if args.quick else FULL), "compile": args.compile, "prompt": PROMPT, "sampler": "dpm++",
                "guidance": 5.0, "seed": 0, "model_name": args.model, "quick": args.quick or args.smoke,
                "date": datetime.date.today().isoformat(), "failed": {},
                "command": " ".join(["python bench/performance.py", *(sys.argv[1:] if argv is None else argv)])}
    sections = set(args.sections.split(","))
    machine = machine_info(args.threads)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="marble-perf-") as scratch:
        folder = export_diffusers(run_dir, Path(scratch) / "diffusers")
        common = {"model": str(run_dir), "diffusers_folder": str(folder), "cache_dir": str(Path(scratch) / "onnx"),
                  "threads": args.threads, "prompt": PROMPT, "sampler": "dpm++", "guidance": 5.0, "seed": 0,
                  "data": str(args.data)}
        for name, section in [("unet", unet_section), ("sampling", sampling_section),
                              ("training", training_section), ("profile", profile_section)]:
            if name in sections:
                results.update(run_section(name, section, settings, common))
    if "quality" in sections:
        results["stages"] = stage_times(run_dir)
        results["evaluation"] = evaluation_numbers(args.eval_metrics)
        settings["eval_metrics"] = str(args.eval_metrics)
        if args.preset_run:
            results["preset_stages"] = stage_times(args.preset_run)
            results["preset_evaluation"] = evaluation_numbers(args.preset_metrics) if args.preset_metrics else None
            settings.update(preset_run=str(args.preset_run), preset_metrics=str(args.preset_metrics))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    raw = {"machine": machine, "settings": settings, "results": results}
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1) + "\n")  # kept even if rendering fails
    text = render(machine, settings, results, args)
    args.out.write_text(text)
    print(text)


def run_section(name: str, section, settings: dict, common: dict) -> dict:
    """A failed section is reported in the file, not fatal: the other sections' numbers still count."""
    try:
        return section(settings, common)
    except RuntimeError as error:
        print(f"[bench] section {name} failed: {error}", file=sys.stderr)
        settings["failed"][name] = str(error).splitlines()[0]
        return {}


def render(machine: dict, settings: dict, results: dict, args) -> str:
    lines = ["# Performance: Marble beside diffusers on the same weights", ""]
    if settings["quick"]:
        lines += ["> **Quick run (`--quick`)**: fewer steps, rounds and smaller batches than the full suite, on a "
                  "machine shared with other jobs, so absolute times are slow and noisy; the side-by-side ratios "
                  "(interleaved rounds) are the numbers to read. The full run replaces this file.", ""]
    lines += [f"Made by `{settings['command']}`.", "", *[f"> {note}" for note in settings.get("notes", [])], "", *report.machine_lines(machine, settings), "",
              "## Targets", "", *report.summary_lines(results), "",
              "## Choices: the default path and the options", "", *report.choices_lines(results, machine), ""]
    if "sampling" in results:
        lines += ["## Sampling", "", *report.sampling_lines(results["sampling"], results["sampling_memory"], settings)]
    if "unet" in results:
        lines += ["## U-Net forward efficiency", "", *report.unet_lines(results["unet"], results["matmul"],
                                                                      results["unet_memory"])]
    if "training" in results:
        lines += ["## Training (U-Net stage)", "", *report.training_lines(results["training"],
                                                                          results["training_memory"]), ""]
    if "stages" in results:
        lines += ["## Time to quality", "", f"Training time per stage of `{settings['model_name']}`, from each "
                  "stage's train_log.jsonl (the clock of a resumed stage summed piece by piece).", "",
                  *report.quality_lines(results["stages"], results["evaluation"],
                                        settings.get("eval_metrics", str(args.eval_metrics))), ""]
    if "preset_stages" in results:
        lines += [f"**`marble train all --preset emoji`, one run from scratch** (`{settings['preset_run']}`), "
                  "on this machine:", "",
                  *report.quality_lines(results["preset_stages"], results["preset_evaluation"],
                                        settings["preset_metrics"]), ""]
    if "profile" in results:
        lines += ["## Profile: where sampling spends its time", "", *report.profile_lines(results["profile"])]
    lines += ["## Where the time goes, and the targets", "", *report.analysis_lines(results), ""]
    for name, reason in settings["failed"].items():
        lines += [f"## {name}: failed", "", f"`{reason}` (see the suite's log)", ""]
    lines += ["## How this was measured", "", *METHOD]
    return "\n".join(lines) + "\n"


METHOD = [
    "- Every task runs in a fresh Python process (`bench/perf/worker.py`); **peak RSS** is that process's "
    "`resource.getrusage(RUSAGE_SELF).ru_maxrss` after loading the model and running the largest batch once, so "
    "it counts everything torch, ONNX Runtime and the allocator hold, interpreter and libraries included "
    "(\"after load\" is the RSS from /proc/self/statm before the measured work). Memory runs are separate "
    "processes from the timing runs, one per path.",
    "- Compared paths run in one process, **interleaved round by round** (A B C A B C …) after a warm-up call, "
    "so background load hits each alike; speed-ups are the median of per-round ratios.",
    "- Spreads are min–max over the rounds. GFLOP/s uses `torch.utils.flop_counter.FlopCounterMode` on one fp32 "
    "forward (it counts matmuls, convolutions and attention, not norms or activations); the matmul peaks are "
    "the best round of an n×n matmul in the same suite run.",
    "- Paths: `fp32` is eager float32 (the same arithmetic as diffusers); `bf16` runs the U-Net under "
    "`torch.autocast(bfloat16)`; `auto` chooses bf16 from U-Net batch 8 up (guidance doubles the batch); "
    "`onnx` runs the U-Net exported once with `torch.onnx.export` in ONNX Runtime's CPU execution provider "
    "(fp32); `openvino` compiles that graph with OpenVINO for each batch size (precision its choice: bf16 on "
    "CPUs with AMX or AVX-512 BF16), `openvino-fp32` asks it for fp32, `openvino-int8` runs it quantized by NNCF "
    "(its one-off calibration and quantization count as its compile time); `compile` is `torch.compile` (inductor). "
    "On the `onnx` and `openvino` paths the decoder runs its own exported graph in the same engine and precision "
    "(int8: bf16), and OpenVINO splits an even batch over two streams; elsewhere the decoder stays fp32 eager, and "
    "the text encoder always does. Marble's prompt-context cache is warm after the first call, diffusers encodes the prompt every call.",
    "- Training: both loops train the same freshly initialised U-Net configuration on the same images and batch "
    "size; Marble's loop is `train_stage` with the run's own settings (bf16 autocast, fused AdamW, EMA), "
    "the diffusers-style loop follows `train_text_to_image.py` (VAE and text encoder every step, fp32, AdamW, "
    "EMAModel, gradient clipping). `marble-compiled` is Marble's loop with `unet.train.compile` set (torch.compile "
    "of the U-Net; its warm-up round pays the compile).",
]


if __name__ == "__main__":
    main()
