"""The evaluation report folder: report.md (tables and images), metrics.json, PNG plots and sample grids.

Every number in report.md says how many images it was measured on and with which feature extractor.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from marble.evaluation.plots import plot_fd_summary, plot_fd_vs_clip, plot_fd_vs_nfe
from marble.images import grid, save_png, upscale

GRID_IMAGES = 16
GRID_PIXELS = 64  # small emoji are enlarged (nearest neighbour) to at least this size in grids
EXTRACTOR_NOTES = {
    "effnet": "ImageNet EfficientNet-Lite0, 1280-d pooled features",
    "inception": "FID's Inception-v3 pool3 (pytorch-fid weights), 2048-d",
    "clip": "the evaluation CLIP's image tower, projected and L2-normalised",
}


def write_report(metrics: dict, images: dict, prompts: list[str], out_dir: Path) -> Path:
    """Write everything into `out_dir`; `images` holds uint8 batches: generated, real, ae_real, ae_decoded, guidance."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    write_grids(images, out_dir)
    write_plots(metrics, out_dir)
    (out_dir / "prompts.txt").write_text("".join(f"{k}\t{p}\n" for k, p in enumerate(prompts)))
    path = out_dir / "report.md"
    path.write_text(render_markdown(metrics, prompts))
    return path


def write_grids(images: dict, out_dir: Path) -> None:
    _save_grid(images["generated"], out_dir / "samples_generated.png")
    _save_grid(images["real"], out_dir / "samples_real.png")
    count = min(GRID_IMAGES // 2, len(images["ae_real"]))
    pairs = torch.cat([images["ae_real"][:count], images["ae_decoded"][:count]])  # top row real, bottom decoded
    _save_grid(pairs, out_dir / "autoencoder_reconstructions.png", columns=count)
    if images["guidance"]:
        rows = [batch[:GRID_IMAGES // 2] for batch in images["guidance"].values()]  # one row per guidance scale
        _save_grid(torch.cat(rows), out_dir / "guidance_grid.png", columns=len(rows[0]))


def _save_grid(images: torch.Tensor, path: Path, columns: int | None = None) -> None:
    shown = images[:GRID_IMAGES] if columns is None else images
    factor = max(1, math.ceil(GRID_PIXELS / shown.shape[-1]))
    save_png(grid(upscale(shown, factor), columns=columns), path)


def write_plots(metrics: dict, out_dir: Path) -> None:
    plot_fd_summary(metrics["fd"], metrics["autoencoder"]["fd"], out_dir / "fd_summary.png")
    curves = metrics.get("curves")
    if curves:
        extractors = list(metrics["fd"])
        plot_fd_vs_nfe(curves["sampler_steps"], extractors, out_dir / "fd_vs_nfe.png")
        plot_fd_vs_clip(curves["guidance_sweep"], extractors, out_dir / "fd_vs_clip_score.png")


# --- markdown ---------------------------------------------------------------------------------


def render_markdown(metrics: dict, prompts: list[str]) -> str:
    sections = [_header(metrics), _fd_table(metrics), _clip_table(metrics), _language_table(metrics),
                _autoencoder_table(metrics), _curves(metrics), _samples(metrics, prompts)]
    return "\n\n".join(section for section in sections if section) + "\n"


def _number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _inference_note(inference: dict | None) -> str:
    """The U-Net's numeric path, e.g. "; U-Net: onnx, precision auto" (older metrics.json lack it)."""
    if not inference:
        return ""
    extras = [name for name in ("compile", "channels_last") if inference.get(name)]
    return f"; U-Net: {inference['backend']}, precision {inference['precision']}" + "".join(f", {e}" for e in extras)


def _header(metrics: dict) -> str:
    settings = metrics["settings"]
    sampling = settings["sampling"]
    lines = [
        "# Marble evaluation report", "",
        f"- run: `{settings['run_dir']}`; data: `{settings['data_dir']}`",
        f"- evaluation CLIP: `{settings['eval_clip_dir']}`",
        f"- **N = {metrics['num_images']}** generated images, one per caption of N real images chosen with seed "
        f"{settings['seed']}; image k uses seed {settings['seed']} + k",
        f"- sampling: {sampling['sampler']}, {sampling['steps']} steps, guidance {sampling['guidance']:g}"
        + _inference_note(settings.get("inference")),
        "- feature extractors: " + "; ".join(_extractor_line(*item) for item in metrics["extractors"].items()),
        f"- time: {metrics['seconds']:.0f} s in all; {metrics['generated_images']} images sampled, "
        f"{_number(metrics['seconds_per_generated_image'], 3)} s each",
    ]
    if metrics["note"]:
        lines.append(f"- note: {metrics['note']}")
    return "\n".join(lines)


def _extractor_line(name: str, info: dict) -> str:
    return f"**{name}** ({EXTRACTOR_NOTES.get(name, name)}; {info['dim']}-d at {info['input_size']} px)"


def _fd_table(metrics: dict) -> str:
    rows = [[name, str(row["num_images"]), _number(row["fd"]), _number(row["floor"]),
             _kid(row["kid"], row["kid_std"]), _kid(row["kid_floor"], row["kid_floor_std"])]
            for name, row in metrics["fd"].items()]
    header = ["extractor", "N", "FD generated vs real", "FD floor (real vs real)", "KID ×10³", "KID floor ×10³"]
    return ("## Fréchet distance\n\nGenerated images vs the N real images whose captions prompted them. The floor "
            "is the same metric between those N and N other real images (disjoint): what a perfect generator would "
            "score at this N. KID is the unbiased MMD² with a cubic polynomial kernel, on all N images up to 1000 "
            "(above: mean ± std over 50 subsets of 1000); it can be slightly negative when two sets match.\n\n"
            + _table(header, rows) + "\n\n![FD summary](fd_summary.png)")


def _kid(value: float, spread: float) -> str:
    """KID ×10³, with the spread over subsets when there were several (N > 1000)."""
    return _number(value * 1e3) + (f" ± {_number(spread * 1e3, 2)}" if spread > 0 else "")


def _clip_table(metrics: dict) -> str:
    scores = metrics["clip_score"]
    labels = {"generated": "generated images vs their prompts", "real": "real images vs their own captions",
              "real_mismatched": "real images vs another image's caption (chance level)"}
    rows = [[labels[key], str(row["num_images"]), _number(row["mean"]), _number(row["std"], 3)]
            for key, row in scores.items()]
    return ("## CLIP score\n\n100 · max(cos, 0) under the evaluation CLIP (trained apart from the generator's text "
            "encoder), primary captions.\n\n" + _table(["images", "N", "CLIP score", "std"], rows))


def _language_table(metrics: dict) -> str:
    by_language = metrics["clip_score_by_language"]
    if not by_language:
        return "## CLIP score per language\n\nThe dataset has no per-language captions."
    rows = [[lang, str(row["generated"]["num_images"]), _number(row["generated"]["mean"]), _number(row["real"]["mean"])]
            for lang, row in by_language.items()]
    return ("## CLIP score per language\n\nImages generated from each language's caption (the first N_lang reference "
            "images having one, same seeds), beside the real images with those captions.\n\n"
            + _table(["language", "N_lang", "generated", "real"], rows))


def _pixel_error_clauses(autoencoder: dict) -> str:
    # Reports written before these metrics existed have neither.
    clauses = []
    if autoencoder.get("corner_error") is not None:
        clauses.append(f", mean absolute error at the four corner pixels {_number(autoencoder['corner_error'], 3)} levels of 255")
    if autoencoder.get("edge_fringe") is not None:
        clauses.append(f", colour fringe (chroma added on the background beside shapes) {_number(autoencoder['edge_fringe'], 3)} levels")
    return "".join(clauses)


def _autoencoder_table(metrics: dict) -> str:
    ae = metrics["autoencoder"]
    rows = [[name, str(row["num_images"]), _number(row["fd"]), _number(row["floor"])] for name, row in ae["fd"].items()]
    return (f"## Autoencoder\n\nHeld-out images (fraction {ae['holdout_fraction']:g} of the data, "
            f"N = {ae['num_images']}) through encode → decode (posterior mean): PSNR {_number(ae['psnr_db'])} dB, "
            f"SSIM {_number(ae['ssim'])}{_pixel_error_clauses(ae)}."
            " The FD floor here is held-out vs as many training images.\n\n"
            + _table(["extractor", "N", "FD reconstructed vs real", "FD floor"], rows)
            + "\n\n![real (top) and reconstructed (bottom)](autoencoder_reconstructions.png)")


def _curves(metrics: dict) -> str:
    curves = metrics.get("curves")
    if not curves:
        return ""
    extractors = list(metrics["fd"])
    header = ["sampler", "steps", "NFE", *(f"FD {name}" for name in extractors)]
    steps_rows = [[row["sampler"], str(row["steps"]), str(row["nfe"]),
                   *(_number(row["fd"][name]["fd"]) for name in extractors)] for row in curves["sampler_steps"]]
    floors = ", ".join(f"{name} {_number(curves['sampler_steps'][0]['fd'][name]['floor'])}" for name in extractors)
    guidance_header = ["guidance", "CLIP score", *(f"FD {name}" for name in extractors)]
    guidance_rows = [[f"{row['guidance']:g}", _number(row["clip_score"]["mean"]),
                      *(_number(row["fd"][name]["fd"]) for name in extractors)] for row in curves["guidance_sweep"]]
    return (f"## Curves\n\nOn the first N = {curves['num_images']} prompts (floors at this N: {floors}). NFE counts "
            f"U-Net calls per image; with guidance {curves['guidance']:g} each call runs the conditional and "
            "unconditional halves in one batch. DDIM (η = 0) and Euler take the same step on the same timesteps "
            "(Karras et al. 2022, section 3), so their rows should match.\n\n" + _table(header, steps_rows)
            + "\n\n![FD vs NFE](fd_vs_nfe.png)\n\n" + _table(guidance_header, guidance_rows)
            + "\n\n![FD vs CLIP score](fd_vs_clip_score.png)\n\n"
            "![one row per guidance scale, smallest first](guidance_grid.png)")


def _samples(metrics: dict, prompts: list[str]) -> str:
    shown = ", ".join(f"{k}: {prompt}" for k, prompt in enumerate(prompts[:GRID_IMAGES]))
    return ("## Samples\n\nThe first generated images and the real images whose captions prompted them "
            f"(all N prompts in prompts.txt). Prompts: {shown}.\n\n"
            "| generated | real |\n|---|---|\n| ![generated](samples_generated.png) | ![real](samples_real.png) |")


__all__ = ["write_report", "render_markdown", "write_grids", "write_plots"]
