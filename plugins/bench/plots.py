"""PNG plots of a grid (matplotlib is an optional extra: `pip install 'purify-backdoor[plot]'`):
ASR against clean accuracy per model, one marker per defense, and time per defense."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from purify_backdoor.atomic import atomic_write
from purify_backdoor.bench.grid import Grid

MARKERS = "osD^vP*Xph<>"


def write_plots(grid: Grid, rows: list[dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    # A grid run in parts: only the models with finished cells get a panel.
    done = {row["model"] for row in rows}
    models = [model.name for model in grid.models if model.name in done] or [grid.models[0].name]
    defenses = [defense.name for defense in grid.defenses]
    figure, axes = pyplot.subplots(
        1, len(models), figsize=(3.6 * len(models), 3.4), squeeze=False, sharey=True
    )
    for axis, model in zip(axes[0], models, strict=True):
        mine = [row for row in rows if row["model"] == model]
        if mine and mine[0]["asr_before"] is not None:
            axis.scatter(
                [100 * mine[0]["clean_acc_before"]], [100 * mine[0]["asr_before"]],
                marker="x", color="black", label="no defense",
            )  # fmt: skip
        for index, defense in enumerate(defenses):
            points = [r for r in mine if r["defense"] == defense and r["asr"] is not None]
            axis.scatter(
                [100 * r["clean_acc"] for r in points], [100 * r["asr"] for r in points],
                marker=MARKERS[index % len(MARKERS)], label=defense,
            )  # fmt: skip
        axis.set_title(model)
        axis.set_xlabel("clean accuracy (%)")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("attack success rate (%)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=min(len(labels), 8), fontsize="small")
    figure.tight_layout(rect=(0, 0, 1, 0.88))
    scatter = out / "asr_vs_clean.png"
    atomic_write(scatter, lambda tmp: figure.savefig(tmp, dpi=120, format="png"))
    pyplot.close(figure)

    timed = [d for d in defenses if any(r["defense"] == d for r in rows)] or defenses
    figure, axis = pyplot.subplots(figsize=(1 + 0.8 * len(timed), 3.2))
    means = [
        statistics.fmean([r["defense_time_s"] for r in rows if r["defense"] == d] or [0.0])
        for d in timed
    ]
    axis.bar(timed, means)
    axis.set_ylabel("defense time per model (s)")
    axis.tick_params(axis="x", rotation=45)
    figure.tight_layout()
    timing = out / "time.png"
    atomic_write(timing, lambda tmp: figure.savefig(tmp, dpi=120, format="png"))
    pyplot.close(figure)
    return [scatter, timing]
