"""MEDIC: Remove Model Backdoors via Importance Driven Cloning (Xu et al., CVPR 2023), as a purify
defense plugin. The reference code (qiulingxu/MEDIC) does not run as published; this is a runnable,
tested implementation of the paper, with the reference's choices where the paper is ambiguous."""

from __future__ import annotations

from torch import nn

from medic_plugin.cloning import MedicSettings, clone_model
from plugins import Defense, DefenseJob, Option, hookimpl

DEFAULTS = MedicSettings()


def run(job: DefenseJob) -> nn.Module:
    return clone_model(job, MedicSettings(**job.options))


@hookimpl
def register_defenses(register):
    register(
        Defense(
            name="medic",
            description="MEDIC (CVPR 2023): importance-driven cloning from a fresh initialisation",
            run=run,
            options=(
                Option("tau", float, DEFAULTS.tau, "importance temperature; 0 = plain cloning"),
                Option("hook_weight", float, DEFAULTS.hook_weight, "lambda: weight of L_clone"),
                Option("epochs", int, DEFAULTS.epochs, "training epochs (cosine schedule)"),
                Option("lr", float, DEFAULTS.lr, "Adam learning rate"),
                Option("weight_decay", float, DEFAULTS.weight_decay, "Adam weight decay"),
                Option("batch_size", int, DEFAULTS.batch_size, "batch size"),
                Option("rotation", float, DEFAULTS.rotation, "augmentation rotation, degrees"),
                Option(
                    "hook_layers",
                    str,
                    DEFAULTS.hook_layers,
                    "layer outputs to clone",
                    choices=("conv", "bn", "conv+bn"),
                ),
                Option(
                    "importance",
                    str,
                    DEFAULTS.importance,
                    "reference: signed values in the softmax (reference code); paper: "
                    "magnitudes (paper text); none: uniform weights",
                    choices=("reference", "paper", "none"),
                ),
                Option(
                    "holdout",
                    float,
                    DEFAULTS.holdout,
                    "fraction of the clean data kept out of training to report accuracy",
                ),
            ),
        )
    )
