"""The HTML page of many runs (a zoo's summary, a bench grid): its table with a link to each
run's own report page, and ASR against clean accuracy, before and after, per attack. Like the
run report, it is one self-contained file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from purify_backdoor.atomic import atomic_write
from purify_backdoor.figures import MATPLOTLIB_MISSING, Figure, matplotlib_available, plot_figure
from purify_backdoor.report_html import esc, figure_tag, page, percent, status_badge, table


def link(text: str, href: str | None) -> str:
    """A relative link to a run's page (the pages travel together), or plain text."""
    return f'<a href="{esc(href)}">{esc(text)}</a>' if href else esc(text)


def outcome_cells(row: dict[str, Any]) -> list[str]:
    """A run's status and its before/after clean accuracy, ASR and DER, as table cells."""
    keys = ("clean_acc_before", "asr_before", "clean_acc", "asr", "der")
    return [status_badge(row["status"]), *(percent(row[key]) for key in keys)]


OUTCOME_HEADER = ["status", "clean before", "ASR before", "clean after", "ASR after", "DER"]


def asr_vs_clean(points: Sequence[dict[str, Any]], attack: str) -> Figure | None:
    """Each model's move from (clean, ASR) before to after the defense, for one attack."""
    usable = [p for p in points if p["asr_before"] is not None and p["asr"] is not None]
    if not usable:
        return None

    def draw(figure) -> None:
        axes = figure.subplots()
        for point in usable:
            start = (100 * point["clean_acc_before"], 100 * point["asr_before"])
            end = (100 * point["clean_acc"], 100 * point["asr"])
            axes.annotate("", end, start, arrowprops={"arrowstyle": "->", "color": "0.6"})
            axes.scatter(*start, marker="x", color="black")
            axes.scatter(*end, label=point["label"])
        axes.set_xlabel("clean accuracy (%)", fontsize=8)
        axes.set_ylabel("attack success rate (%)", fontsize=8)
        axes.set_ylim(-5, 105)
        axes.grid(alpha=0.3)
        axes.set_title(attack, fontsize=9)
        if len(usable) <= 12:
            axes.legend(fontsize=6)

    caption = (
        f"{attack}: each model before (x) and after the defense (dot), ASR against clean accuracy."
    )
    return plot_figure(caption, draw, size=(5.0, 3.6))


def overview_page(
    title: str,
    intro: str,
    header: list[str],
    rows: list[list[str]],
    figures: Sequence[Figure],
    numeric_from: int = 3,
    numeric_to: int | None = None,
) -> str:
    """Cells of `rows` are HTML already (escape text with `esc`; `link` makes links)."""
    parts = [f"<h1>{esc(title)}</h1>", f"<p>{esc(intro)}</p>"]
    if figures:
        parts.append("<h2>Plots</h2>")
        parts += [figure_tag(figure) for figure in figures]
    elif not matplotlib_available():
        parts.append(f'<p class="note">No plots: {esc(MATPLOTLIB_MISSING)}.</p>')
    parts += ["<h2>Runs</h2>", table(header, rows, numeric_from, numeric_to)]
    return page(title, "".join(parts))


def write_page(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))
