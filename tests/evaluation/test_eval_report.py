"""`marble eval` on the tiny run: the real-image split, FD beside its floor, batched sampling, the report folder."""

import contextlib
import io
import json
import math

import pytest
import torch

from marble.cli import main
from marble.errors import MarbleError
from marble.evaluation.eval_clip import eval_clip_config, train_eval_clip
from marble.evaluation.run_eval import EvalSettings, evaluate, fd_with_floor, network_evaluations, split_real_pool
from marble.evaluation.sampling import SampleCache, SamplingOptions
from marble.inference.options import InferenceOptions
from marble.pipeline import GenerationRequest, MarblePipeline

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAST = SamplingOptions(steps=3, sampler="dpm++", guidance=5.0)


@pytest.fixture(scope="module")
def eval_clip(synthetic_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "eval-clip"
    train_eval_clip(synthetic_dataset, out, eval_clip_config("tiny", steps=2), progress=False)
    return out


@pytest.fixture(scope="module")
def pipeline(tiny_run) -> MarblePipeline:
    return MarblePipeline.load(tiny_run)


def settings(tiny_run, synthetic_dataset, eval_clip, out, **changes) -> EvalSettings:
    values = dict(run_dir=tiny_run, data_dir=synthetic_dataset, eval_clip_dir=eval_clip, out_dir=out, num_images=8,
                  extractors=("clip",), sampling=FAST, lang_num_images=4)
    values.update(changes)
    return EvalSettings(**values)


# --- the real-image split and FD beside its floor -----------------------------------------------


def test_real_split_is_two_disjoint_seeded_halves():
    split = split_real_pool(100, 30, seed=3)
    assert len(split.reference) == len(split.other) == split.num_images == 30
    assert not set(split.reference) & set(split.other)
    assert set(split.reference) | set(split.other) <= set(range(100))
    assert split_real_pool(100, 30, seed=3) == split
    assert split_real_pool(100, 30, seed=4).reference != split.reference
    assert split.note == ""


def test_short_dataset_uses_half_of_it_and_says_so():
    split = split_real_pool(21, 1000, seed=0)
    assert split.num_images == 10 and len(set(split.reference + split.other)) == 20
    assert "N = 10" in split.note and "1000" in split.note and "21" in split.note


@pytest.mark.parametrize("pool, count, fragment", [(100, 1, "at least 2"), (3, 10, "at least 4")])
def test_split_refuses_sets_too_small_for_a_covariance(pool, count, fragment):
    with pytest.raises(MarbleError, match=fragment):
        split_real_pool(pool, count, seed=0)


def test_fd_with_floor_matches_the_closed_form_for_a_shift():
    generator = torch.Generator().manual_seed(0)
    reference = torch.randn(64, 3, generator=generator, dtype=torch.float64)
    other = torch.randn(64, 3, generator=generator, dtype=torch.float64)
    shifted = reference + torch.tensor([3.0, 0.0, 4.0], dtype=torch.float64)
    row = fd_with_floor(shifted, reference, other)
    # Same covariance, means 5 apart: FD = ‖Δμ‖² = 25 exactly.
    assert row["fd"] == pytest.approx(25.0, abs=1e-9)
    assert 0 < row["floor"] < 1  # two samples of one Gaussian: near, not equal
    assert row["kid"] > row["kid_floor"] and row["num_images"] == 64
    assert fd_with_floor(reference, reference, other)["fd"] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(MarbleError, match="equal N"):
        fd_with_floor(shifted[:10], reference, other)


def test_network_evaluations_count_model_calls():
    assert network_evaluations("ddim", 50) == 50
    assert network_evaluations("heun", 10) == 19


# --- batched sampling -------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["dpm++", "ddpm"])
def test_batch_image_k_is_generate_of_prompt_k_with_seed_k(pipeline, sampler):
    prompts, seeds = ["red circle", "blue square", "green ring"], [7, 8, 9]
    batch = pipeline.generate_batch(prompts, seeds, steps=4, guidance=3.0, sampler=sampler)
    assert batch.shape == (3, 3, 16, 16) and batch.dtype == torch.uint8
    for k, (prompt, seed) in enumerate(zip(prompts, seeds)):
        alone = pipeline.generate(GenerationRequest(prompt, steps=4, guidance=3.0, sampler=sampler, seed=seed)).images
        assert (alone[0].int() - batch[k].int()).abs().max() <= 1  # only batched-matmul round-off
    assert not torch.equal(batch[0], batch[1])


def test_generate_batch_rejects_mismatched_or_bad_input(pipeline):
    with pytest.raises(MarbleError, match="one seed per prompt"):
        pipeline.generate_batch(["red circle"], [1, 2])
    with pytest.raises(MarbleError, match="sampler"):
        pipeline.generate_batch(["red circle"], [1], sampler="magic")


def test_sample_cache_makes_each_image_once(pipeline):
    cache = SampleCache(pipeline, batch_size=2, progress=False)
    first = cache.generate(["red circle", "blue square", "red circle"], [1, 2, 1], FAST)
    assert cache.generated == 2 and torch.equal(first[0], first[2])
    again = cache.generate(["blue square"], [2], FAST)
    assert cache.generated == 2 and torch.equal(again[0], first[1])
    cache.generate(["blue square"], [2], SamplingOptions(steps=2))
    assert cache.generated == 3


# --- the report end to end --------------------------------------------------------------------


@pytest.fixture(scope="module")
def report(tiny_run, synthetic_dataset, eval_clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "eval"
    lines = []
    chosen = settings(tiny_run, synthetic_dataset, eval_clip, out, curves=True, curve_num_images=4,
                      curve_samplers=("ddim", "euler"), curve_steps=(2, 3), curve_extra_runs=(("ddim", 5),),
                      guidance_scales=(1.0, 5.0))
    metrics = evaluate(chosen, progress=False, report=lines.append)
    return out, metrics, lines


def finite(value) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def test_report_states_n_and_extractor_for_every_number(report):
    out, _, lines = report
    text = (out / "report.md").read_text()
    assert "N = 8" in text and "**clip**" in text
    headings = ("## Fréchet distance", "## CLIP score", "## CLIP score per language", "## Autoencoder", "## Curves")
    for heading in headings:
        assert heading in text
    assert "| clip | 8 |" in text  # FD table row: extractor, N
    assert any(line.startswith("FD[clip]") and "floor" in line for line in lines)


def test_metrics_json_has_fd_floor_kid_and_clip_scores(report):
    out, metrics, _ = report
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["num_images"] == 8 and saved["settings"]["extractors"] == ["clip"]
    assert saved["settings"]["inference"] == {"precision": "fp32", "channels_last": False, "compile": False,
                                              "backend": "torch"}  # EvalSettings' default: exact eager fp32
    row = saved["fd"]["clip"]
    for key in ("fd", "floor", "kid", "kid_std", "kid_floor", "kid_floor_std"):
        assert finite(row[key]), key
    assert row["num_images"] == 8 and row["floor"] > 0
    for key in ("generated", "real", "real_mismatched"):
        assert finite(saved["clip_score"][key]["mean"]) and saved["clip_score"][key]["num_images"] == 8
    assert set(saved["clip_score_by_language"]) == {"en", "zh"}
    assert saved["clip_score_by_language"]["zh"]["generated"]["num_images"] == 4


def test_autoencoder_quality_on_the_held_out_split(report):
    metrics = report[1]["autoencoder"]
    assert metrics["holdout_fraction"] == 0.25 and metrics["num_images"] == 8
    assert finite(metrics["psnr_db"]) and -1 <= metrics["ssim"] <= 1
    assert 0 < metrics["corner_error"] < 255
    assert 0 < metrics["edge_fringe"] < 255  # the shapes are drawn on white: their edges have background beside them
    text = (report[0] / "report.md").read_text()
    assert f"corner pixels {metrics['corner_error']:.3g} levels" in text
    assert f"beside shapes) {metrics['edge_fringe']:.3g} levels" in text
    assert finite(metrics["fd"]["clip"]["fd"]) and finite(metrics["fd"]["clip"]["floor"])


def test_curves_cover_every_sampler_run_and_guidance_scale(report):
    curves = report[1]["curves"]
    assert curves["num_images"] == 4
    runs = [(row["sampler"], row["steps"]) for row in curves["sampler_steps"]]
    assert runs == [("ddim", 2), ("ddim", 3), ("euler", 2), ("euler", 3), ("ddim", 5)]
    assert [row["guidance"] for row in curves["guidance_sweep"]] == [1.0, 5.0]
    assert all(finite(row["fd"]["clip"]["fd"]) for row in curves["sampler_steps"] + curves["guidance_sweep"])


def test_images_are_sampled_once_and_reused(report):
    # 8 main images; en captions equal the primary ones (reused), 4 zh; 5 curve runs x 4; guidance 1 x 4
    # (guidance 5 with the main sampler and steps is the first 4 main images again).
    assert report[1]["generated_images"] == 8 + 4 + 5 * 4 + 4
    assert report[1]["seconds_per_generated_image"] > 0


def test_plots_and_grids_are_png_files(report):
    out = report[0]
    for name in ("fd_summary", "fd_vs_nfe", "fd_vs_clip_score", "samples_generated", "samples_real",
                 "autoencoder_reconstructions", "guidance_grid"):
        assert (out / f"{name}.png").read_bytes()[:8] == PNG_SIGNATURE, name
    assert len((out / "prompts.txt").read_text().splitlines()) == 8


def test_effnet_extractor_path_on_four_real_images(tiny_run, synthetic_dataset, eval_clip, tmp_path):
    metrics = evaluate(settings(tiny_run, synthetic_dataset, eval_clip, tmp_path / "eval", num_images=2,
                                extractors=("effnet",), lang_num_images=1), progress=False, report=lambda line: None)
    assert metrics["extractors"]["effnet"] == {"dim": 1280, "input_size": 224}
    assert finite(metrics["fd"]["effnet"]["fd"]) and finite(metrics["fd"]["effnet"]["floor"])
    assert "**effnet**" in (tmp_path / "eval" / "report.md").read_text()


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("changes, fragment", [
    ({"num_images": 1}, "at least 2"),
    ({"extractors": ("effnet", "vgg")}, "unknown feature extractor 'vgg'"),
    ({"extractors": ("inception",)}, "--inception-weights"),
    ({"sampling": SamplingOptions(sampler="magic")}, "sampler"),
    ({"inference": InferenceOptions(precision="bf16", backend="onnx")}, "backend onnx"),
])
def test_bad_settings_fail_before_loading_anything(tiny_run, synthetic_dataset, eval_clip, tmp_path, changes, fragment):
    with pytest.raises(MarbleError, match=fragment):
        evaluate(settings(tiny_run, synthetic_dataset, eval_clip, tmp_path / "eval", **changes), progress=False)
    assert not (tmp_path / "eval").exists()


def test_cli_missing_eval_clip_is_a_one_line_error(tiny_run, synthetic_dataset, tmp_path, capsys):
    code = main(["eval", str(tiny_run), "--data", str(synthetic_dataset), "--eval-clip", str(tmp_path / "none"),
                 "--out", str(tmp_path / "eval")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert "no evaluation CLIP" in lines[0] and "marble train eval-clip" in lines[0]


def test_cli_eval_smoke(tiny_run, synthetic_dataset, eval_clip, tmp_path):
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["eval", str(tiny_run), "--data", str(synthetic_dataset), "--eval-clip", str(eval_clip),
                     "--num-images", "20", "--extractors", "clip", "--steps", "2", "--lang-num-images", "1",
                     "--out", str(tmp_path / "eval"), "--no-progress"])
    assert code == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    # 32 images cannot give two disjoint sets of 20: N falls to 16 and the report says why.
    assert metrics["num_images"] == 16 and metrics["num_images_requested"] == 20
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "N = 16 (half the dataset)" in report
    assert "N = 16" in stdout.getvalue()
    # The CLI samples on generate's default path (ONNX) and says so.
    assert metrics["settings"]["inference"]["backend"] == "openvino" and "U-Net: openvino, precision auto" in report
