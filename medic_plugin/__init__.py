"""MEDIC: Remove Model Backdoors via Importance Driven Cloning (Xu et al., CVPR 2023), as a purify
defense plugin. The reference code (qiulingxu/MEDIC) does not run as published; this is a runnable,
tested implementation of the paper, with the reference's choices where the paper is ambiguous."""

from __future__ import annotations

import dataclasses

from torch import nn

from purify_backdoor import (
    Defense,
    DefenseJob,
    Option,
    PurifyError,
    above,
    at_least,
    between,
    hookimpl,
    options_from_settings,
    settings_from_options,
)
from purify_backdoor.medic.cloning import MedicSettings, clone_model
from purify_backdoor.medic.layers import KINDS
from purify_backdoor.medic.temperature import choose_temperature

AUTO_HOLDOUT = 0.1  # the slice tau auto judges on, when --holdout does not give one
HELP = {
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
BOUNDS = {
    "hook_weight": at_least(0),
    "epochs": at_least(1),
    "lr": above(0),
    "weight_decay": at_least(0),
    "batch_size": at_least(1),
    "rotation": between(0, 180),
    "holdout": between(0, 1, max_open=True),
}


def parse_tau(text: str) -> float | None:
    """A tau, or None for auto."""
    if text == "auto":
        return None
    try:
        tau = float(text)
    except ValueError:
        tau = -1.0
    if tau < 0:
        raise PurifyError(f"medic tau must be 'auto' or a number >= 0, got '{text}'")
    return tau


def run(job: DefenseJob) -> nn.Module:
    options = job.options
    tau = parse_tau(str(options["tau"]))
    settings = settings_from_options(MedicSettings, options, tau=tau or 0.0)
    if tau is not None:
        return clone_model(job, settings)
    clone, record = choose_temperature(
        job,
        options["auto_budget"] / 100,
        settings.holdout or AUTO_HOLDOUT,
        lambda trial, tau: clone_model(trial, dataclasses.replace(settings, tau=tau, holdout=0)),
    )
    job.details.setdefault("medic", {})["tau_auto"] = record
    return clone


@hookimpl
def register_defenses(register):
    register(
        Defense(
            name="medic",
            description="MEDIC (CVPR 2023): importance-driven cloning from a fresh initialisation",
            run=run,
            options=(
                Option(
                    "tau",
                    str,
                    "5",
                    "importance temperature; 0 = plain cloning; auto = the largest of 5, 10, 20 "
                    "whose clone stays within auto_budget of the teacher on held-out clean data",
                ),
                Option(
                    "auto_budget",
                    float,
                    2.5,
                    "tau auto: clean-accuracy points the clone may lose on the held-out slice",
                    bounds=between(0, 100),
                ),
                *options_from_settings(MedicSettings, HELP, choices=CHOICES, bounds=BOUNDS),
            ),
        )
    )
