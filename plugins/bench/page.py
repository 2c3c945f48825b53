"""results.html: the grid's table with a link to each cell's report page, and its plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from purify_backdoor.bench.grid import Grid
from purify_backdoor.bench.runner import cell_path, cells
from purify_backdoor.figures import Figure
from purify_backdoor.overview_html import (
    OUTCOME_HEADER,
    link,
    outcome_cells,
    overview_page,
    write_page,
)
from purify_backdoor.report import report_path_for
from purify_backdoor.report_html import esc, html_path_for

CAPTIONS = {
    "asr_vs_clean.png": "ASR against clean accuracy per model: no defense (x) and each defense.",
    "time.png": "Defense time per model, mean over the grid's models and seeds.",
}


def write_html(grid: Grid, rows: list[dict[str, Any]], out: Path, plots: list[Path]) -> Path:
    pages = {}
    for cell in cells(grid):
        page = html_path_for(report_path_for(cell_path(cell, out)))
        if page.exists():
            pages[(cell.model.name, cell.defense.name, cell.seed)] = str(page.relative_to(out))
    header = ["model", "defense", "seed", *OUTCOME_HEADER, "defense time (s)"]
    body = [
        [
            esc(row["model"]),
            link(row["defense"], pages.get((row["model"], row["defense"], row["seed"]))),
            esc(row["seed"]),
            *outcome_cells(row),
            "-" if row["defense_time_s"] is None else f"{row['defense_time_s']:.0f}",
        ]
        for row in rows
    ]
    figures = [Figure(CAPTIONS.get(plot.name, plot.name), plot.read_bytes()) for plot in plots]
    intro = f"{len(rows)} finished cells of {grid.path.name}; each defense links to its report."
    path = out / "results.html"
    write_page(path, overview_page("purify bench", intro, header, body, figures, numeric_from=4))
    return path
