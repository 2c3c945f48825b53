"""Running a grid: each attack model is trained once and each (model, defense, seed) cell is one
`purify` process, so a cell's peak memory is its own, a crash stays in its cell, and the exact
command is in its log. Finished work (a report on disk from the same command, on the same model
file) is skipped on a re-run; started work continues with `--resume`."""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

from purify_backdoor.bench.grid import DefenseSpec, Grid, ModelSpec
from purify_backdoor.checkpoints import checkpoint_files, file_sha256
from purify_backdoor.errors import PurifyError
from purify_backdoor.executors import Executor, Job, Outcome
from purify_backdoor.executors.job import command_signature, logged_command, option_assignments
from purify_backdoor.plugin_types import RunContext
from purify_backdoor.purification import PurifyRequest
from purify_backdoor.report import report_path_for
from purify_backdoor.run_command import run_arguments
from purify_backdoor.training import workdir_for


@dataclass(frozen=True)
class Cell:
    model: ModelSpec
    defense: DefenseSpec
    seed: int

    @property
    def key(self) -> str:
        return f"{self.model.name}/{self.defense.name}/seed{self.seed}"


@dataclass(frozen=True)
class Failure:
    what: str
    log: Path
    reason: str


def cells(grid: Grid) -> list[Cell]:
    """Every model x defense x seed, then the `more_seeds` cells not already among them."""
    chosen = [
        Cell(model, defense, seed)
        for model in grid.models
        for defense in grid.defenses
        for seed in grid.seeds
    ]
    models = {model.name: model for model in grid.models}
    defenses = {defense.name: defense for defense in grid.defenses}
    for more in grid.more_seeds:
        for name in more.models:
            for defense in more.defenses:
                chosen += [Cell(models[name], defenses[defense], seed) for seed in more.seeds]
    unique: dict[str, Cell] = {}
    for cell in chosen:
        unique.setdefault(cell.key, cell)
    return list(unique.values())


def model_path(model: ModelSpec, out: Path) -> Path:
    return model.checkpoint if model.checkpoint else out / "models" / f"{model.name}.pth.tar"


def cell_path(cell: Cell, out: Path) -> Path:
    suffix = ".pth.tar" if model_path(cell.model, out).name.endswith(".pth.tar") else ".pt"
    return out / "cells" / cell.model.name / f"{cell.defense.name}-seed{cell.seed}{suffix}"


def _relative(path: Path, grid: Grid) -> str:
    return os.path.relpath(path.resolve(), grid.folder)


def train_command(model: ModelSpec, grid: Grid, out: Path, device: str, resume: bool) -> list[str]:
    command = [
        "attack", "--plugin", model.train, "--data", _relative(grid.data, grid),
        "--out", _relative(model_path(model, out), grid), "--profile", model.profile,
        "--poison-ratio", str(model.poison_ratio), "--seed", str(model.seed),
        "--device", device, "--quiet", "--overwrite", *option_assignments(model.options),
    ]  # fmt: skip
    if model.epochs is not None:
        command += ["--epochs", str(model.epochs)]
    if model.n_train is not None:
        command += ["--n-train", str(model.n_train)]
    return command + (["--resume"] if resume else [])


def cell_command(cell: Cell, grid: Grid, out: Path, device: str, resume: bool) -> list[str]:
    """The cell's `purify run`, its paths relative to the grid's folder (where it runs)."""
    model = cell.model
    request = PurifyRequest(
        model_path=Path(_relative(model_path(model, out), grid)),
        plugin=cell.defense.plugin,
        options=cell.defense.options,
        data=Path(_relative(grid.data, grid)),
        out=Path(_relative(cell_path(cell, out), grid)),
        format=model.format,
        arch=model.arch,
        attack=model.attack,
        ratio=grid.ratio,
        n_clean=grid.n_clean,
        overwrite=True,
        accept_low_accuracy=model.accept_low_accuracy,
    )
    return run_arguments(request, seed=cell.seed, device=device, resume=resume)


def model_digest(path: Path) -> str:
    """The model's sha256, hashed once per version of its files: every cell of a model asks for
    it, on each planning and results pass, and a zoo model can weigh gigabytes."""
    stamp = tuple((f.stat().st_size, f.stat().st_mtime_ns) for f in checkpoint_files(path))
    return _digest(path, stamp)


@functools.lru_cache(maxsize=64)
def _digest(path: Path, stamp: tuple[tuple[int, int], ...]) -> str:
    return file_sha256(path)


def finished(cell: Cell, grid: Grid, out: Path) -> bool:
    """A report exists, came from the command the grid asks for now and read the model file as
    it is now: a cell whose defense options (or data, ratio, model) were edited in the grid
    since, or whose checkpoint was replaced (a retrained model under the same name), is run
    again."""
    path = cell_path(cell, out)
    log = path.with_name(path.name + ".log")
    report = report_path_for(path)
    if not report.exists():
        return False
    wanted = cell_command(cell, grid, out, "auto", resume=False)
    if logged_command(log) != command_signature(wanted):
        return False
    model = model_path(cell.model, out)
    read = json.loads(report.read_text()).get("input", {}).get("sha256")
    return model.exists() and read == model_digest(model)


def chosen(cell: Cell, only: tuple[str, ...]) -> bool:
    """`--only`: a cell is run when its key (model/defense/seedN) contains one of the texts."""
    return not only or any(text in cell.key for text in only)


def run_grid(
    grid: Grid,
    out: Path,
    device: str,
    context: RunContext,
    executor: Executor,
    only: tuple[str, ...] = (),
) -> list[Failure]:
    """Train missing attack models, then run every unfinished cell (each phase through the
    executor, so cells may run at once); returns what failed. `only` narrows both to some
    cells: the order in which a long grid is run in parts."""
    every = cells(grid)
    for text in only:
        if not any(chosen(cell, (text,)) for cell in every):
            raise PurifyError(
                f"--only {text!r} names no cell of {grid.path.name} (cells are named "
                f"model/defense/seedN, e.g. {every[0].key if every else 'm/d/seed0'}); fix the text"
            )
    todo = [c for c in every if chosen(c, only) and not finished(c, grid, out)]
    needed = {cell.model.name for cell in todo}
    trained = [
        m for m in grid.models if m.train and m.name in needed and not model_path(m, out).exists()
    ]
    failures: list[Failure] = []
    bar = context.progress(total=len(trained) + len(todo), desc="bench", unit="job")
    logs: dict[str, Path] = {}

    def on_done(outcome: Outcome) -> None:
        if not outcome.ok:
            failures.append(Failure(outcome.key, logs[outcome.key], outcome.error or ""))
        bar.set_postfix_str(f"{outcome.key} done")
        bar.update()

    training = []
    for model in trained:
        path = model_path(model, out)
        path.parent.mkdir(parents=True, exist_ok=True)
        resume = workdir_for(path).exists()
        command = train_command(model, grid, out, device, resume)
        key = f"training {model.name}"
        logs[key] = out / "logs" / f"train-{model.name}.log"
        training.append(Job(key, tuple(command), logs[key], grid.folder))
    try:
        executor.run(training, on_done)
        broken = {m.name for m in trained if f"training {m.name}" in {f.what for f in failures}}
        runs = []
        for cell in todo:
            if cell.model.name in broken:
                bar.update()
                continue
            path = cell_path(cell, out)
            path.parent.mkdir(parents=True, exist_ok=True)
            command = cell_command(cell, grid, out, device, workdir_for(path).exists())
            logs[cell.key] = path.with_name(path.name + ".log")
            runs.append(Job(cell.key, tuple(command), logs[cell.key], grid.folder))
        executor.run(runs, on_done)
    finally:
        bar.close()
    return failures
