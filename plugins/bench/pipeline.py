"""`purify bench` from grid file to result files: run what is unfinished, then tabulate and plot
everything finished."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from purify_backdoor.bench.grid import load_grid
from purify_backdoor.bench.page import write_html
from purify_backdoor.bench.plots import write_plots
from purify_backdoor.bench.results import collect_rows, write_markdown, write_rows
from purify_backdoor.bench.runner import Failure, run_grid
from purify_backdoor.executors import Executor, LocalExecutor
from purify_backdoor.figures import matplotlib_available
from purify_backdoor.plugin_types import RunContext


@dataclass(frozen=True)
class BenchRun:
    """What a bench run left: the rows, the files written (the Markdown table among them), the
    jobs that failed, and whether plots were skipped for want of matplotlib."""

    rows: list[dict]
    written: list[Path]
    table: Path
    failures: list[Failure]
    plotted: bool


def run_bench(
    grid_file: Path,
    out: Path | None,
    device: str,
    context: RunContext,
    executor: Executor | None = None,
    run: bool = True,
    only: tuple[str, ...] = (),
) -> BenchRun:
    """`purify bench`: run the grid's unfinished jobs (one at a time on this machine unless another
    executor is given), then write every result file from all the finished ones
    (results.csv/json/md and, with matplotlib, PNG plots). `run=False` only writes them: the
    tables of a grid run in parts, or of one still running elsewhere. `only` runs just the cells
    whose key contains one of its texts; the files still cover every finished cell."""
    grid = load_grid(grid_file)
    out = out or grid_file.with_suffix("")
    out.mkdir(parents=True, exist_ok=True)
    executor = executor or LocalExecutor()
    failures = run_grid(grid, out, device, context, executor, only) if run else []
    rows = collect_rows(grid, out)
    table = write_markdown(grid, rows, out)
    written = [*write_rows(rows, out), table]
    plotted = matplotlib_available()
    plots = write_plots(grid, rows, out) if plotted else []
    written += [*plots, write_html(grid, rows, out, plots)]
    return BenchRun(rows, written, table, failures, plotted)
