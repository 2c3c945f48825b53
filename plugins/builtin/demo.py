"""`purify demo`: the whole story on data the package draws itself, in a few CPU minutes. It runs
the product's own pipeline, not a shortcut: the synthetic data set is written to a folder, a
backdoored WideResNet-16-1 is trained on it exactly as `purify attack` trains one, and that file is
purified exactly as `purify --plugin medic MODEL --data DATA` would (adapter, clean subset, atomic
output, report)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from purify_backdoor import (
    PurifyError,
    PurifyRequest,
    RunContext,
    TrainRequest,
    hookimpl,
    metrics_table,
    purify_checkpoint,
    run_context,
    synthetic_images,
    train_backdoored,
)

ATTACK = {"pattern": "grid", "target": 0}


def write_demo_data(path: Path, train_images: int, image_size: int, seed: int) -> Path:
    """Synthetic train and test splits in one `.npz`, a data format `--data` reads."""
    train = synthetic_images(train_images, image_size, seed=seed)
    test = synthetic_images(train_images // 4, image_size, seed=seed + 1)
    np.savez(
        path,
        x=train.images,
        y=train.labels,
        x_test=test.images,
        y_test=test.labels,
        classes=np.array(train.classes),
    )
    return path


def run_demo(
    context: RunContext,
    defense_name: str,
    folder: Path,
    train_images: int = 4000,
    epochs: int = 8,
    image_size: int = 16,
    accept_low_accuracy: bool = False,
) -> dict[str, Any]:
    """Data, backdoored model, purified model and report in `folder`; returns the report.
    `accept_low_accuracy` is for schedules too short to train the model (tests)."""
    data = write_demo_data(folder / "data.npz", train_images, image_size, context.seed)
    model = folder / "backdoored.pth.tar"
    train_backdoored(
        TrainRequest(
            attack="badnet",
            options=ATTACK,
            data=data,
            arch="wrn16-1",
            out=model,
            poison_ratio=0.1,
            epochs=epochs,
            lr=0.05,
        ),
        context,
    )
    request = PurifyRequest(
        model_path=model,
        plugin=defense_name,
        options={},
        data=data,
        ratio=0.1,
        accept_low_accuracy=accept_low_accuracy,
    )
    return purify_checkpoint(request, context)


@click.command()
@click.option("-p", "--plugin", default="medic", show_default=True, help="defense to demonstrate")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="keep the data, models and report in this new folder  [default: a temporary one]",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="no progress bars")
def demo(plugin: str, out: Path | None, seed: int, device: str, quiet: bool) -> None:
    """Poison, train, purify and compare on built-in synthetic data (no download)."""
    started = time.perf_counter()
    context = run_context(seed, device, quiet)
    if out is not None:
        if out.exists():
            raise PurifyError(f"demo folder {out} already exists; choose a new --out")
        out.mkdir(parents=True)
        report = run_demo(context, plugin, out)
    else:
        with tempfile.TemporaryDirectory(prefix="purify-demo-") as folder:
            report = run_demo(context, plugin, Path(folder))
    metrics = report["metrics"]
    click.echo("BadNets grid trigger, target class 0, 10% poisoned; defender holds 10% clean data")
    columns = {"backdoored": metrics["before"], f"purified ({plugin})": metrics["after"]}
    click.echo(metrics_table(columns))
    if out is not None:
        click.echo(f"purified model: {report['output']['path']}")
    click.echo(f"total time: {time.perf_counter() - started:.0f} s")


@hookimpl
def register_commands(cli):
    cli.add_command(demo)
