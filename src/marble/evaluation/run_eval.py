"""`marble eval`: sample a run on a dataset's captions and measure it, every number beside its floor.

A Fréchet distance means little alone: two disjoint sets of N real images are some distance apart
too, and that distance (the floor) shrinks as N grows. So each FD and KID here is printed beside the
same metric, same extractor, same N, between two disjoint halves of real data.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from marble.config import DataConfig, RunConfig, load_json
from marble.data.folder import ImageCaptionSet, load_image_folder
from marble.data.split import split_holdout
from marble.errors import MarbleError
from marble.evaluation.clip_score import clip_score, load_clip_with_tokenizer
from marble.evaluation.extractors import EXTRACTORS, FeatureExtractor, make_extractor
from marble.evaluation.frechet import feature_stats, frechet_distance, kernel_inception_distance
from marble.evaluation.image_metrics import SSIM_WINDOW, corner_error, mean_edge_fringe, psnr, ssim
from marble.evaluation.sampling import DEFAULT_BATCH_SIZE, SampleCache, SamplingOptions, image_seeds
from marble.inference.options import EXACT, InferenceOptions
from marble.layout import RunLayout
from marble.pipeline import GenerationRequest, MarblePipeline
from marble.training.autoencoder_stage import reconstruct

KID_SUBSETS = 50
KID_SUBSET_SIZE = 1000
CURVE_SAMPLERS = ("ddpm", "ddim", "dpm++", "euler")
CURVE_STEPS = (5, 10, 20, 50)
CURVE_EXTRA_RUNS = (("ddim", 250),)  # DDIM's long-schedule reference point (Song et al. 2021, table 1)
GUIDANCE_SCALES = (1.0, 2.0, 3.0, 5.0, 7.5, 10.0)


@dataclass(frozen=True)
class EvalSettings:
    run_dir: Path
    data_dir: Path
    eval_clip_dir: Path
    out_dir: Path
    num_images: int = 1000
    extractors: tuple[str, ...] = ("effnet", "clip")
    inception_weights: Path | None = None
    sampling: SamplingOptions = SamplingOptions()
    seed: int = 0
    batch_size: int = DEFAULT_BATCH_SIZE
    lang_num_images: int = 200  # per caption language, at most N
    curves: bool = False
    curve_num_images: int = 200  # at most N
    curve_samplers: tuple[str, ...] = CURVE_SAMPLERS
    curve_steps: tuple[int, ...] = CURVE_STEPS
    curve_extra_runs: tuple[tuple[str, int], ...] = CURVE_EXTRA_RUNS
    guidance_scales: tuple[float, ...] = GUIDANCE_SCALES
    inference: InferenceOptions = EXACT  # the numeric path that samples: its quality is what is measured

    def validate(self) -> None:
        """Raise MarbleError for the first bad setting, before any model is loaded."""
        for name in ("num_images", "curve_num_images"):
            if getattr(self, name) < 2:
                raise MarbleError(f"{name} must be at least 2 (a covariance needs 2 images), got {getattr(self, name)}")
        if self.lang_num_images < 1 or self.batch_size < 1:
            raise MarbleError("lang_num_images and batch_size must be at least 1")
        if not self.extractors:
            raise MarbleError(f"name at least one feature extractor: {', '.join(EXTRACTORS)}")
        unknown = [name for name in self.extractors if name not in EXTRACTORS]
        if unknown:
            raise MarbleError(f"unknown feature extractor {unknown[0]!r}; choose from {', '.join(EXTRACTORS)}")
        if "inception" in self.extractors and self.inception_weights is None:
            raise MarbleError("the inception extractor needs --inception-weights PATH (pytorch-fid's .pth file)")
        runs = [(self.sampling.sampler, self.sampling.steps, self.sampling.guidance)]
        if self.curves:
            runs += [(s, n, self.sampling.guidance) for s, n in self.curve_runs()]
            runs += [(self.sampling.sampler, self.sampling.steps, g) for g in self.guidance_scales]
        for sampler, steps, guidance in runs:
            GenerationRequest("prompt", self.sampling.negative_prompt, steps, guidance, sampler, self.seed).validate()
        self.inference.validate()
        check_eval_clip_dir(self.eval_clip_dir)

    def curve_runs(self) -> list[tuple[str, int]]:
        return [(s, n) for s in self.curve_samplers for n in self.curve_steps] + list(self.curve_extra_runs)


def check_eval_clip_dir(directory: Path) -> None:
    if not (Path(directory) / "config.json").is_file() or not (Path(directory) / "tokenizer.json").is_file():
        raise MarbleError(f"no evaluation CLIP in {directory}: train one with "
                          f"`marble train eval-clip --data DATA --out {directory}`")


# --- choosing real images ---------------------------------------------------------------------


@dataclass(frozen=True)
class RealSplit:
    """Two disjoint sets of N real images: `reference` gives the prompts and the comparison, `other` the floor."""

    reference: list[int]
    other: list[int]
    requested: int
    pool_size: int

    @property
    def num_images(self) -> int:
        return len(self.reference)

    @property
    def note(self) -> str:
        if self.num_images == self.requested:
            return ""
        return (f"asked for N = {self.requested}, but the floor needs 2N distinct real images and the dataset has "
                f"{self.pool_size}: N = {self.num_images} (half the dataset)")


def split_real_pool(pool_size: int, num_images: int, seed: int) -> RealSplit:
    """A seeded choice of 2N distinct indices of `pool_size`, halved; N = pool_size // 2 when the pool is short."""
    if num_images < 2:
        raise MarbleError(f"N must be at least 2 (a covariance needs two images), got {num_images}")
    count = min(num_images, pool_size // 2)
    if count < 2:
        raise MarbleError(f"the dataset has {pool_size} images; FD beside its floor needs at least 4 "
                          "(two disjoint sets of at least 2)")
    order = torch.randperm(pool_size, generator=torch.Generator().manual_seed(seed)).tolist()
    return RealSplit(order[:count], order[count:2 * count], num_images, pool_size)


# --- metrics with floors ----------------------------------------------------------------------


def fd_with_floor(candidate: Tensor, reference: Tensor, other: Tensor, seed: int = 0) -> dict:
    """FD and KID of candidate vs reference features beside the same of `other` (disjoint real) vs reference."""
    if not len(candidate) == len(reference) == len(other):
        raise MarbleError(f"FD beside its floor needs equal N: {len(candidate)}, {len(reference)}, {len(other)}")
    reference_stats = feature_stats(reference)
    kid, kid_std = _kid(candidate, reference, seed)
    kid_floor, kid_floor_std = _kid(other, reference, seed)
    return {"fd": frechet_distance(feature_stats(candidate), reference_stats),
            "floor": frechet_distance(feature_stats(other), reference_stats),
            "kid": kid, "kid_std": kid_std, "kid_floor": kid_floor, "kid_floor_std": kid_floor_std,
            "num_images": len(candidate)}


def _kid(x: Tensor, y: Tensor, seed: int) -> tuple[float, float]:
    """Mean ± std over subsets of 1000 (Bińkowski et al.); up to 1000 images, one estimate on all of them (std 0)."""
    generator = torch.Generator().manual_seed(seed)
    subsets = KID_SUBSETS if min(len(x), len(y)) > KID_SUBSET_SIZE else 1  # more would only permute the same set
    return kernel_inception_distance(x, y, subsets, min(KID_SUBSET_SIZE, len(x)), generator)


def mean_clip_score(clip, tokenizer, images: Tensor, prompts: list[str]) -> dict:
    scores = clip_score(clip, tokenizer, images, prompts)
    spread = float(scores.std()) if len(scores) > 1 else 0.0
    return {"mean": float(scores.mean()), "std": spread, "num_images": len(scores)}


# --- the evaluation ---------------------------------------------------------------------------


@dataclass
class EvalContext:
    """Everything loaded once and shared by the sections."""

    settings: EvalSettings
    pipeline: MarblePipeline
    data: ImageCaptionSet
    split: RealSplit
    reference: ImageCaptionSet  # the split's reference images with their captions
    extractors: dict[str, FeatureExtractor]
    clip: object
    tokenizer: object
    cache: SampleCache
    real_features: dict[str, dict[str, Tensor]]  # "reference" | "other" -> extractor -> (N, D)

    def prompts(self) -> list[str]:
        return [captions["text"] for captions in self.reference.captions]

    def seeds(self) -> list[int]:
        return image_seeds(self.settings.seed, self.split.num_images)

    def features(self, images: Tensor) -> dict[str, Tensor]:
        return {name: extractor.features(images) for name, extractor in self.extractors.items()}

    def fd_rows(self, images: Tensor) -> dict[str, dict]:
        """FD/KID of generated `images` (the first len(images) prompts) vs the same count of reference images."""
        count = len(images)
        return {name: fd_with_floor(candidate, self.real_features["reference"][name][:count],
                                    self.real_features["other"][name][:count], self.settings.seed)
                for name, candidate in self.features(images).items()}


def load_context(settings: EvalSettings, progress: bool) -> EvalContext:
    settings.validate()
    clip, tokenizer = load_clip_with_tokenizer(settings.eval_clip_dir)
    pipeline = MarblePipeline.load(settings.run_dir, settings.inference)
    data, _ = load_image_folder(Path(settings.data_dir), pipeline.image_size, progress=progress)
    split = split_real_pool(len(data), settings.num_images, settings.seed)
    extractors = {name: _make_extractor(name, settings) for name in settings.extractors}
    context = EvalContext(settings, pipeline, data, split, data.subset(split.reference), extractors, clip, tokenizer,
                          SampleCache(pipeline, settings.batch_size, progress), {})
    context.real_features = {"reference": context.features(context.reference.images),
                             "other": context.features(data.subset(split.other).images)}
    return context


def _make_extractor(name: str, settings: EvalSettings) -> FeatureExtractor:
    options = {"clip": {"clip_dir": settings.eval_clip_dir},
               "inception": {"weights_path": settings.inception_weights}}.get(name, {})
    return make_extractor(name, **options)


def generation_section(context: EvalContext) -> tuple[dict, Tensor]:
    """FD/KID per extractor and CLIP score of one image per reference caption; (metrics, generated images)."""
    images = context.cache.generate(context.prompts(), context.seeds(), context.settings.sampling)
    reference, prompts = context.reference, context.prompts()
    shuffled = prompts[1:] + prompts[:1]  # each real image with another image's caption: the chance level
    scores = {"generated": mean_clip_score(context.clip, context.tokenizer, images, prompts),
              "real": mean_clip_score(context.clip, context.tokenizer, reference.images, prompts),
              "real_mismatched": mean_clip_score(context.clip, context.tokenizer, reference.images, shuffled)}
    return {"fd": context.fd_rows(images), "clip_score": scores}, images


def caption_languages(data: ImageCaptionSet) -> list[str]:
    return sorted({lang for captions in data.captions for lang in captions if lang != "text"})


def language_section(context: EvalContext) -> dict:
    """CLIP score of images generated from each language's captions, beside real images with those captions."""
    reference, seeds, limit = context.reference, context.seeds(), context.settings.lang_num_images
    results = {}
    for lang in caption_languages(context.data):
        rows = [k for k, captions in enumerate(reference.captions) if lang in captions][:limit]
        if not rows:
            continue
        prompts = [reference.captions[k][lang] for k in rows]
        images = context.cache.generate(prompts, [seeds[k] for k in rows], context.settings.sampling,
                                        f"generating {lang}")
        results[lang] = {"generated": mean_clip_score(context.clip, context.tokenizer, images, prompts),
                         "real": mean_clip_score(context.clip, context.tokenizer, reference.images[rows], prompts)}
    return results


def autoencoder_section(context: EvalContext, holdout_fraction: float) -> tuple[dict, Tensor, Tensor]:
    """PSNR, SSIM and reconstruction FD on the run's held-out images; (metrics, real, reconstructed)."""
    train, holdout = split_holdout(context.data, holdout_fraction)
    count = min(len(holdout), len(train), context.settings.num_images)
    if count < 2:
        raise MarbleError(f"only {len(holdout)} held-out images (fraction {holdout_fraction}); need at least 2")
    real = holdout.images[:count]
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(context.settings.seed))
    other = train.images[order[:count]]  # the floor: held-out vs as many training images
    decoded = reconstruct(context.pipeline.vae, real)
    real_features, other_features = context.features(real), context.features(other)
    fd = {name: fd_with_floor(candidate, real_features[name], other_features[name], context.settings.seed)
          for name, candidate in context.features(decoded).items()}
    fits_ssim = min(real.shape[-2:]) >= SSIM_WINDOW
    return {"num_images": count, "holdout_fraction": holdout_fraction, "psnr_db": float(psnr(real, decoded).mean()),
            "ssim": float(ssim(real, decoded).mean()) if fits_ssim else None,
            "corner_error": float(corner_error(real, decoded).mean()),
            "edge_fringe": mean_edge_fringe(real, decoded), "fd": fd}, real, decoded


def curves_section(context: EvalContext) -> tuple[dict, dict[float, Tensor]]:
    """FD against sampler steps, and FD against CLIP score across guidance scales, on the first M prompts."""
    settings = context.settings
    count = min(settings.curve_num_images, context.split.num_images)
    prompts, seeds = context.prompts()[:count], context.seeds()[:count]
    steps_rows = []
    for sampler, steps in settings.curve_runs():
        options = dataclasses.replace(settings.sampling, sampler=sampler, steps=steps)
        images = context.cache.generate(prompts, seeds, options, f"curve {sampler} {steps}")
        steps_rows.append({"sampler": sampler, "steps": steps, "nfe": network_evaluations(sampler, steps),
                           "fd": context.fd_rows(images)})
    guidance_rows, guidance_images = [], {}
    for scale in settings.guidance_scales:
        options = dataclasses.replace(settings.sampling, guidance=scale)
        images = context.cache.generate(prompts, seeds, options, f"guidance {scale:g}")
        guidance_images[scale] = images
        guidance_rows.append({"guidance": scale, "fd": context.fd_rows(images),
                              "clip_score": mean_clip_score(context.clip, context.tokenizer, images, prompts)})
    return {"num_images": count, "guidance": settings.sampling.guidance, "sampler_steps": steps_rows,
            "guidance_sweep": guidance_rows}, guidance_images


def network_evaluations(sampler: str, steps: int) -> int:
    """U-Net calls per image (a guided call runs the doubled batch once); Heun evaluates twice per step but the last."""
    return 2 * steps - 1 if sampler == "heun" else steps


def evaluate(settings: EvalSettings, progress: bool = True, report: Callable[[str], None] = print) -> dict:
    """Run every section, write OUT/report.md, metrics.json, plots and grids; return the metrics."""
    from marble.evaluation.report import write_report

    started = time.perf_counter()
    context = load_context(settings, progress)
    if context.split.note:
        report(context.split.note)
    report(f"N = {context.split.num_images}; extractors: {', '.join(settings.extractors)}")
    generation, generated = generation_section(context)
    for name, row in generation["fd"].items():
        report(f"FD[{name}] {row['fd']:.4g} (floor {row['floor']:.4g}), N = {row['num_images']}")
    metrics = {"settings": settings_record(settings), "num_images": context.split.num_images,
               "num_images_requested": settings.num_images, "note": context.split.note,
               "extractors": {name: {"dim": extractor.dim, "input_size": extractor.input_size}
                              for name, extractor in context.extractors.items()},
               **generation, "clip_score_by_language": language_section(context)}
    ae_metrics, ae_real, ae_decoded = autoencoder_section(context, _holdout_fraction(settings.run_dir))
    metrics["autoencoder"] = ae_metrics
    guidance_images = {}
    if settings.curves:
        metrics["curves"], guidance_images = curves_section(context)
    metrics["seconds"] = round(time.perf_counter() - started, 1)
    metrics["seconds_per_generated_image"] = context.cache.seconds_per_image
    metrics["generated_images"] = context.cache.generated
    images = {"generated": generated, "real": context.reference.images, "ae_real": ae_real,
              "ae_decoded": ae_decoded, "guidance": guidance_images}
    path = write_report(metrics, images, context.prompts(), Path(settings.out_dir))
    report(f"wrote {path}")
    return metrics


def _holdout_fraction(run_dir: Path) -> float:
    """The held-out fraction the run was trained with (RUN/run.json), else the default."""
    saved = RunLayout(Path(run_dir)).run_config
    try:
        return load_json(RunConfig, saved).data.holdout_fraction
    except (OSError, ValueError):  # no run.json (a bare model folder) or one from another Marble version
        return DataConfig().holdout_fraction


def settings_record(settings: EvalSettings) -> dict:
    record = dataclasses.asdict(settings)
    return {key: str(value) if isinstance(value, Path) else value for key, value in record.items()}


__all__ = [
    "EvalSettings", "RealSplit", "split_real_pool", "fd_with_floor", "network_evaluations", "evaluate",
    "caption_languages", "check_eval_clip_dir",
]
