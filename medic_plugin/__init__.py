"""MEDIC: Remove Model Backdoors via Importance Driven Cloning (Xu et al., CVPR 2023), as a purify
defense plugin. The reference code (qiulingxu/MEDIC) does not run as published; this is a runnable,
tested implementation of the paper, with the reference's choices where the paper is ambiguous."""

from __future__ import annotations

from torch import nn

from purify_backdoor import (
    Defense,
    DefenseJob,
    hookimpl,
    options_from_settings,
    settings_from_options,
)
from purify_backdoor.medic.cloning import MedicSettings, clone_model
from purify_backdoor.medic.layers import KINDS

HELP = {
    "tau": "importance temperature; 0 = plain cloning",
    "hook_weight": "lambda: weight of L_clone",
    "epochs": "training epochs (cosine schedule)",
    "lr": "Adam learning rate",
    "weight_decay": "Adam weight decay",
    "batch_size": "batch size",
    "rotation": "augmentation rotation, degrees",
    "hook_layers": "layer outputs to clone",
    "importance": "reference: signed values in the softmax (reference code); paper: magnitudes "
    "(paper text); none: uniform weights",
    "holdout": "fraction of the clean data kept out of training to report accuracy",
}
CHOICES = {"hook_layers": KINDS, "importance": ("reference", "paper", "none")}


def run(job: DefenseJob) -> nn.Module:
    return clone_model(job, settings_from_options(MedicSettings, job.options))


@hookimpl
def register_defenses(register):
    register(
        Defense(
            name="medic",
            description="MEDIC (CVPR 2023): importance-driven cloning from a fresh initialisation",
            run=run,
            options=options_from_settings(MedicSettings, HELP, choices=CHOICES),
        )
    )
