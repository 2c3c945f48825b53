"""Running a grid: each attack model is trained once and each (model, defense, seed) cell is one
`purify` process, so a cell's peak memory is its own, a crash stays in its cell, and the exact
command is in its log. Finished work (a report on disk from the same command) is skipped on a
re-run; started work continues with `--resume`."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from purify_backdoor.bench.grid import DefenseSpec, Grid, ModelSpec
from purify_backdoor.plugin_types import RunContext
from purify_backdoor.purification import UNCHANGED_EXIT
from purify_backdoor.report import report_path_for
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
    return [
        Cell(model, defense, seed)
        for model in grid.models
        for defense in grid.defenses
        for seed in grid.seeds
    ]


def model_path(model: ModelSpec, out: Path) -> Path:
    return model.checkpoint if model.checkpoint else out / "models" / f"{model.name}.pth.tar"


def cell_path(cell: Cell, out: Path) -> Path:
    suffix = ".pth.tar" if model_path(cell.model, out).name.endswith(".pth.tar") else ".pt"
    return out / "cells" / cell.model.name / f"{cell.defense.name}-seed{cell.seed}{suffix}"


def _assignments(options: dict) -> list[str]:
    flags = []
    for key, value in options.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        flags += ["-o", f"{key}={text}"]
    return flags


def train_command(model: ModelSpec, grid: Grid, out: Path, device: str, resume: bool) -> list[str]:
    command = [
        "attack", "--plugin", model.train, "--data", str(grid.data),
        "--out", str(model_path(model, out)), "--profile", model.profile,
        "--poison-ratio", str(model.poison_ratio), "--seed", str(model.seed),
        "--device", device, "--quiet", "--overwrite", *_assignments(model.options),
    ]  # fmt: skip
    if model.epochs is not None:
        command += ["--epochs", str(model.epochs)]
    if model.n_train is not None:
        command += ["--n-train", str(model.n_train)]
    return command + (["--resume"] if resume else [])


def cell_command(cell: Cell, grid: Grid, out: Path, device: str, resume: bool) -> list[str]:
    model = cell.model
    command = [
        "run", "--plugin", cell.defense.plugin, str(model_path(model, out)),
        "--data", str(grid.data), "--seed", str(cell.seed), "--out", str(cell_path(cell, out)),
        "--device", device, "--quiet", "--overwrite", *_assignments(cell.defense.options),
    ]  # fmt: skip
    command += ["--n-clean", str(grid.n_clean)] if grid.n_clean else ["--ratio", str(grid.ratio)]
    if model.attack:
        command += ["--attack", model.attack]
    if model.format != "auto":
        command += ["--format", model.format]
    if model.arch:
        command += ["--arch", model.arch]
    return command + (["--resume"] if resume else [])


def _signature(arguments: list[str]) -> str:
    """What decides a cell's result: its command without --resume and --device."""
    kept = [a for a in arguments if a != "--resume"]
    if "--device" in kept:
        at = kept.index("--device")
        del kept[at : at + 2]
    return " ".join(kept)


def finished(cell: Cell, grid: Grid, out: Path) -> bool:
    """A report exists and came from the command the grid asks for now: a cell whose defense
    options (or data, ratio, model) were edited in the grid since is run again."""
    path = cell_path(cell, out)
    log = path.with_name(path.name + ".log")
    if not (report_path_for(path).exists() and log.exists()):
        return False
    with log.open() as handle:
        recorded = handle.readline().removeprefix("$ purify ").rstrip("\n").split(" ")
    wanted = cell_command(cell, grid, out, "auto", resume=False)
    return _signature(recorded) == _signature(wanted)


def _run_logged(arguments: list[str], log: Path) -> str | None:
    """Run `purify ARGUMENTS` with its output in `log`; None on success, else the error line."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        handle.write("$ purify " + " ".join(arguments) + "\n")
        handle.flush()
        code = subprocess.run(
            [sys.executable, "-m", "purify_backdoor", *arguments],
            stdout=handle,
            stderr=subprocess.STDOUT,
        ).returncode
    if code in (0, UNCHANGED_EXIT):  # an unchanged model is a result: its report says so
        return None
    if code in (130, -2):
        raise KeyboardInterrupt
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    return (errors or lines or [f"exit status {code}"])[-1].removeprefix("Error: ")


def run_grid(grid: Grid, out: Path, device: str, context: RunContext) -> list[Failure]:
    """Train missing attack models, then run every unfinished cell; returns what failed."""
    trained = [m for m in grid.models if m.train and not model_path(m, out).exists()]
    todo = [cell for cell in cells(grid) if not finished(cell, grid, out)]
    failures: list[Failure] = []
    broken: set[str] = set()
    bar = context.progress(total=len(trained) + len(todo), desc="bench", unit="job")
    for model in trained:
        path = model_path(model, out)
        path.parent.mkdir(parents=True, exist_ok=True)
        bar.set_postfix_str(f"training {model.name}")
        resume = workdir_for(path).exists()
        log = out / "logs" / f"train-{model.name}.log"
        reason = _run_logged(train_command(model, grid, out, device, resume), log)
        if reason:
            failures.append(Failure(f"training {model.name}", log, reason))
            broken.add(model.name)
        bar.update()
    for cell in todo:
        bar.set_postfix_str(cell.key)
        if cell.model.name in broken:
            bar.update()
            continue
        path = cell_path(cell, out)
        resume = workdir_for(path).exists()
        log = path.with_name(path.name + ".log")
        reason = _run_logged(cell_command(cell, grid, out, device, resume), log)
        if reason:
            failures.append(Failure(cell.key, log, reason))
        bar.update()
    bar.close()
    return failures
