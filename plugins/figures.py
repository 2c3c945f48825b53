"""Pictures for the HTML report: a `Figure` is a caption and PNG bytes, so a report carries its
pictures as data (base64 in the JSON) and `purify report` can draw the page again without the
model. Plots need matplotlib (the `plot` extra); without it `plot_png` returns None and the page
says what is missing, while images made from arrays need only Pillow."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

MATPLOTLIB_MISSING = "matplotlib is not installed (pip install 'purify-backdoor[plot]')"


@dataclass(frozen=True)
class Figure:
    """A named picture of what a defense did, shown in the report with its caption."""

    caption: str
    png: bytes

    def as_record(self) -> dict[str, str]:
        return {"caption": self.caption, "png": base64.b64encode(self.png).decode("ascii")}

    @staticmethod
    def from_record(record: dict[str, str]) -> Figure:
        return Figure(record["caption"], base64.b64decode(record["png"]))


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def png_from_array(image: np.ndarray, scale: int = 1) -> bytes:
    """A uint8 HWC (or HW) image as PNG, enlarged `scale` times without smoothing (pixels of a
    trigger stay visible)."""
    picture = Image.fromarray(np.ascontiguousarray(image))
    if scale > 1:
        picture = picture.resize(
            (picture.width * scale, picture.height * scale), Image.Resampling.NEAREST
        )
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def plot_png(draw: Callable[[Any], None], size: tuple[float, float] = (6.0, 3.0)) -> bytes | None:
    """`draw(figure)` fills a matplotlib figure (Agg, no display); its PNG, or None without
    matplotlib."""
    if not matplotlib_available():
        return None
    from matplotlib.figure import Figure as PlotFigure

    figure = PlotFigure(figsize=size, dpi=100, layout="constrained")
    draw(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def plot_figure(
    caption: str, draw: Callable[[Any], None], size: tuple[float, float] = (6.0, 3.0)
) -> Figure | None:
    """A plotted `Figure`, or None without matplotlib."""
    png = plot_png(draw, size)
    return None if png is None else Figure(caption, png)


def channel_scores_figure(
    caption: str,
    scores: dict[str, list[float]],
    pruned: dict[str, list[int]],
    thresholds: dict[str, float],
    ylabel: str,
    log: bool = False,
) -> Figure | None:
    """What a pruning defense saw: one column per layer, one dot per channel (its score), the
    layer's threshold as a dash, and the pruned channels in red; None without matplotlib."""
    names = list(scores)

    def draw(figure: Any) -> None:
        axes = figure.subplots()
        spread = np.random.default_rng(0)
        for column, name in enumerate(names):
            values = np.asarray(scores[name], dtype=float)
            cut = set(pruned.get(name, []))
            x = column + spread.uniform(-0.25, 0.25, len(values))
            colours = ["tab:red" if index in cut else "tab:blue" for index in range(len(values))]
            axes.scatter(x, values, s=6, c=colours, linewidths=0)
            if name in thresholds:
                axes.plot([column - 0.4, column + 0.4], [thresholds[name]] * 2, color="black", lw=1)
        axes.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=6)
        axes.set_ylabel(ylabel, fontsize=8)
        if log:
            axes.set_yscale("log")
        axes.tick_params(axis="y", labelsize=7)

    return plot_figure(caption, draw, size=(max(6.0, 0.35 * len(names) + 2), 3.6))
