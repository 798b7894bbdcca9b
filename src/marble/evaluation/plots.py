"""PNG plots for the evaluation report, drawn with matplotlib's Agg backend (no display needed).

Each figure has one panel per feature extractor: FDs from different extractors have unrelated scales.
"""

from __future__ import annotations

from pathlib import Path

FIGURE_DPI = 110
PANEL_INCHES = (4.2, 3.4)


def _pyplot():
    """pyplot on the Agg backend, imported on first use so importing Marble never touches matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panels(count: int):
    plt = _pyplot()
    figure, axes = plt.subplots(1, count, figsize=(PANEL_INCHES[0] * count, PANEL_INCHES[1]), squeeze=False)
    return plt, figure, axes[0]


def _save(plt, figure, path: Path) -> Path:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=FIGURE_DPI)
    plt.close(figure)
    return path


def plot_fd_summary(fd: dict[str, dict], autoencoder_fd: dict[str, dict], path: Path) -> Path:
    """Bars per extractor: generated vs real, then reconstructed vs held-out, each beside its floor."""
    plt, figure, axes = _panels(len(fd))
    for axis, (name, row) in zip(axes, fd.items()):
        labels = ["generated", "floor"]
        values = [row["fd"], row["floor"]]
        if name in autoencoder_fd:
            labels += ["reconstructed", "floor (held-out)"]
            values += [autoencoder_fd[name]["fd"], autoencoder_fd[name]["floor"]]
        axis.bar(labels, values, color=["tab:red", "tab:gray", "tab:blue", "tab:gray"][:len(values)])
        axis.set_title(f"FD, {name} features (N = {row['num_images']})")
        axis.tick_params(axis="x", labelrotation=20)
    return _save(plt, figure, path)


def plot_fd_vs_nfe(rows: list[dict], extractors: list[str], path: Path) -> Path:
    """FD against network evaluations, one line per sampler, log x; the floor is the dashed line."""
    plt, figure, axes = _panels(len(extractors))
    samplers = list(dict.fromkeys(row["sampler"] for row in rows))
    for axis, name in zip(axes, extractors):
        for sampler in samplers:
            points = sorted((row["nfe"], row["fd"][name]["fd"]) for row in rows if row["sampler"] == sampler)
            axis.plot(*zip(*points), marker="o", label=sampler)
        axis.axhline(rows[0]["fd"][name]["floor"], color="gray", linestyle="--", label="floor (real vs real)")
        axis.set_xscale("log")
        ticks = sorted({row["nfe"] for row in rows})
        axis.set_xticks(ticks, [str(tick) for tick in ticks])  # plain step counts, not 10^x
        axis.minorticks_off()
        axis.set_ylim(bottom=0)
        axis.set_xlabel("network evaluations per image")
        axis.set_ylabel(f"FD ({name})")
        axis.set_title(f"FD vs steps, N = {rows[0]['fd'][name]['num_images']}")
        axis.legend(fontsize="small")
    return _save(plt, figure, path)


def plot_fd_vs_clip(rows: list[dict], extractors: list[str], path: Path) -> Path:
    """The guidance trade-off: FD against CLIP score, a point per guidance scale (as GLIDE and Imagen plot it)."""
    plt, figure, axes = _panels(len(extractors))
    for axis, name in zip(axes, extractors):
        scores = [row["clip_score"]["mean"] for row in rows]
        distances = [row["fd"][name]["fd"] for row in rows]
        axis.plot(scores, distances, marker="o")
        for row, x, y in zip(rows, scores, distances):
            axis.annotate(f"w={row['guidance']:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize="small")
        axis.axhline(rows[0]["fd"][name]["floor"], color="gray", linestyle="--", label="FD floor")
        axis.set_ylim(bottom=0)
        axis.set_xlabel("CLIP score (evaluation CLIP)")
        axis.set_ylabel(f"FD ({name})")
        axis.set_title(f"guidance sweep, N = {rows[0]['fd'][name]['num_images']}")
        axis.legend(fontsize="small")
    return _save(plt, figure, path)


__all__ = ["plot_fd_summary", "plot_fd_vs_nfe", "plot_fd_vs_clip"]
