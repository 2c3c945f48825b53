"""Plain fine-tuning on the clean subset: the baseline every defense must beat."""

from __future__ import annotations

from torch import nn

from purify_backdoor import (
    Defense,
    DefenseJob,
    Option,
    TrainSettings,
    above,
    at_least,
    fit,
    hookimpl,
)


def run(job: DefenseJob) -> nn.Module:
    options = job.options
    settings = TrainSettings(
        epochs=options["epochs"],
        lr=options["lr"],
        batch_size=options["batch_size"],
        weight_decay=options["weight_decay"],
    )
    return fit(job.model, job.clean, settings, job.context, name="finetune")


@hookimpl
def register_defenses(register):
    register(
        Defense(
            name="finetune",
            description="fine-tune the model on the clean subset (SGD, cosine schedule)",
            run=run,
            options=(
                Option(
                    "epochs", int, 10, "training epochs over the clean subset", bounds=at_least(1)
                ),
                Option(
                    "lr",
                    float,
                    0.01,
                    "initial learning rate (cosine-annealed to 0)",
                    bounds=above(0),
                ),
                Option("batch_size", int, 64, "batch size", bounds=at_least(1)),
                Option("weight_decay", float, 5e-4, "SGD weight decay", bounds=at_least(0)),
            ),
        )
    )
