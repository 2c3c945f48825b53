"""The committed grids' finished cells stay finished: the command the bench asks for now has the
signature their logs hold, so a change to how a cell's command is written cannot make a re-run
of `purify bench` redo hours of measured cells."""

from __future__ import annotations

from pathlib import Path

import pytest

from purify_backdoor.bench.grid import load_grid
from purify_backdoor.bench.runner import cell_command, cell_path, cells
from purify_backdoor.executors.job import command_signature, logged_command

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"


def logged_cells(grid_name: str) -> list[tuple[str, str, str]]:
    """(cell, command asked for now, command logged) for each cell of the grid with a log."""
    path = BENCHMARKS / grid_name
    grid, out = load_grid(path), path.with_suffix("")
    found = []
    for cell in cells(grid):
        target = cell_path(cell, out)
        logged = logged_command(target.with_name(target.name + ".log"))
        if logged is not None:
            wanted = command_signature(cell_command(cell, grid, out, "auto", resume=False))
            found.append((cell.key, wanted, logged))
    return found


def test_the_fast_grid_has_logged_cells():
    assert len(logged_cells("cifar10_fast.toml")) >= 50


@pytest.mark.parametrize("grid_name", ["cifar10_fast.toml", "cifar10_small.toml"])
def test_every_logged_cell_is_asked_for_with_its_logged_command(grid_name):
    changed = [(key, wanted) for key, wanted, logged in logged_cells(grid_name) if wanted != logged]
    assert changed == []
