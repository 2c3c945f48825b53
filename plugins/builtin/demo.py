"""`purify demo`: the whole story on data the package draws itself, in a few CPU minutes: poison a
training set, train a backdoored WideResNet-16-1, purify it with a shipped defense, and compare."""

from __future__ import annotations

import copy
import time

import click

from plugins import DefenseJob, hookimpl
from plugins.attack_spec import make_attack_spec, poison_training_set
from plugins.data.clean_subset import clean_subset
from plugins.data.synthetic import synthetic_images
from plugins.evaluation import evaluate_model, metrics_table
from plugins.manager import lookup
from plugins.models.wideresnet import WideResNet
from plugins.options import resolve_options
from plugins.plugin_types import RunContext
from plugins.runtime import resolve_device, seed_everything
from plugins.training import TrainSettings, fit


def run_demo(
    context: RunContext,
    defense_name: str,
    train_images: int = 4000,
    epochs: int = 8,
    image_size: int = 16,
) -> dict[str, dict[str, float]]:
    """Returns the metrics of the backdoored and the purified model."""
    train = synthetic_images(train_images, image_size, seed=context.seed)
    test = synthetic_images(train_images // 4, image_size, seed=context.seed + 1)
    spec = make_attack_spec("badnet", {"pattern": "grid", "target": 0})
    poisoned, _ = poison_training_set(train, spec, ratio=0.1, seed=context.seed)
    model = WideResNet(16, 1, train.num_classes)
    fit(model, poisoned, TrainSettings(epochs=epochs, lr=0.05), context, name="train backdoor")
    backdoored = copy.deepcopy(model).eval()
    before = evaluate_model(backdoored, test, spec, context)

    defense = lookup("defense", defense_name)
    clean, _ = clean_subset(train, context.seed, ratio=0.1)
    job = DefenseJob(
        model=model,
        clean=clean,
        num_classes=train.num_classes,
        options=resolve_options(defense.options, {}, f"defense '{defense_name}'"),
        context=context,
    )
    purified = defense.run(job)
    after = evaluate_model(purified, test, spec, context, reference=backdoored)
    return {"backdoored": before, f"purified ({defense_name})": after}


@click.command()
@click.option("-p", "--plugin", default="medic", show_default=True, help="defense to demonstrate")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="no progress bars")
def demo(plugin: str, seed: int, device: str, quiet: bool) -> None:
    """Poison, train, purify and compare on built-in synthetic data (no download)."""
    started = time.perf_counter()
    seed_everything(seed)
    context = RunContext(device=resolve_device(device), seed=seed, quiet=quiet)
    columns = run_demo(context, plugin)
    click.echo("BadNets grid trigger, target class 0, 10% poisoned; defender holds 10% clean data")
    click.echo(metrics_table(columns))
    click.echo(f"total time: {time.perf_counter() - started:.0f} s")


@hookimpl
def register_commands(cli):
    cli.add_command(demo)
