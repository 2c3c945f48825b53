"""The grid's plots: a grid run in parts draws only the models and defenses with finished cells."""

from __future__ import annotations

from PIL import Image

from purify_backdoor.bench.plots import write_plots
from tests.plugins.bench.test_results import grid_of, row


def test_models_and_defenses_without_finished_cells_are_not_drawn(tmp_path):
    grid = grid_of(seeds=(0,), models=("m", "not-yet", "other"))
    rows = [row("m", "ft", 0, 0.70, 0.10), row("other", "clp", 0, 0.79, 0.05)]
    scatter, timing = write_plots(grid, rows, tmp_path)
    panels, bars = Image.open(scatter).size[0], Image.open(timing).size[0]
    scatter, timing = write_plots(grid, rows[:1], tmp_path)
    assert Image.open(scatter).size[0] * 2 == panels  # 3.6 inches a panel
    assert Image.open(timing).size[0] < bars  # one bar (ft) instead of two
