"""BAERASER: Backdoor Defense with Machine Unlearning (Liu et al., INFOCOM 2022) as a purify
defense plugin: recover the trigger distribution without knowing trigger or target (recovery.py),
then unlearn it by gradient ascent under a drift penalty (unlearning.py)."""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.utils import save_image

from purify_backdoor import (
    Defense,
    DefenseJob,
    ImageSet,
    LoadedModel,
    Option,
    PurifyError,
    RunContext,
    above,
    at_least,
    between,
    hookimpl,
    options_from_settings,
    settings_from_options,
    to_tensor,
)
from purify_backdoor.unlearn.generator import FORMS, TriggerGenerator
from purify_backdoor.unlearn.recovery import RecoverySettings, recover_triggers, sample_triggers
from purify_backdoor.unlearn.trigger_figure import trigger_figure
from purify_backdoor.unlearn.unlearning import UnlearnSettings, unlearn

TRIGGERS = ".triggers"
RECOVERY_HELP = {
    "trigger": "trigger form: all (patch anywhere, full-image pattern, patch at the corners)",
    "patch_size": "side of a patch trigger",
    "additive_eps": "L-inf bound of an additive trigger, 1/255",
    "staircase": "rising hinge thresholds beta, one generator each",
    "entropy_weight": "alpha: weight of the MINE entropy term",
    "hidden": "width of the generator and MINE networks",
    "steps": "training steps per generator",
    "tau": "keep labels whose triggers reach this success rate",
    "anomaly": "also keep labels whose success has this MAD anomaly index (0: tau only)",
}
RECOVERY_NAMES = {"steps": "generator_steps"}
RECOVERY_BOUNDS = {
    "patch_size": at_least(1),
    "additive_eps": between(0, 255, min_open=True),
    "entropy_weight": at_least(0),
    "hidden": at_least(1),
    "steps": at_least(1),
    "tau": between(0, 1),
    "anomaly": at_least(0),
}
TRIGGER_FORMS = {"trigger": ("all", *FORMS)}
UNLEARN_HELP = {
    "alpha": "weight of the gradient-ascent unlearning term",
    "beta": "weight of the Fisher-weighted drift penalty",
    "steps": "most unlearning steps",
    "lr": "SGD learning rate of the unlearning",
}
UNLEARN_NAMES = {"steps": "unlearn_steps", "lr": "unlearn_lr"}
UNLEARN_BOUNDS = {"alpha": above(0), "beta": at_least(0), "steps": at_least(1), "lr": above(0)}


def candidate_labels(text: str, num_classes: int) -> list[int]:
    if text == "all":
        return list(range(num_classes))
    try:
        labels = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise PurifyError(
            f"labels must be 'all' or comma-separated integers, got '{text}'"
        ) from None
    if not labels or labels[0] < 0 or labels[-1] >= num_classes:
        raise PurifyError(f"labels must lie in 0..{num_classes - 1}, got '{text}'")
    return labels


def staircase(text: str) -> tuple[float, ...]:
    try:
        steps = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise PurifyError(f"staircase must be comma-separated numbers, got '{text}'") from None
    if list(steps) != sorted(steps) or not all(0 < step <= 1 for step in steps):
        raise PurifyError(f"staircase must rise within (0, 1], got '{text}'")
    return steps


def split_clean(
    clean: ImageSet, holdout: float, context: RunContext
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) to train the generators and unlearn on, and the held-out part that scores
    the recovered triggers."""
    images, labels = to_tensor(clean.images), torch.from_numpy(clean.labels)
    order = torch.randperm(len(images), generator=context.generator(offset=20))
    cut = int(len(images) * (1 - holdout))
    train, held = order[:cut], order[cut:]
    if len(held) == 0 or cut == 0:
        raise PurifyError(
            "baeraser needs clean images both to train and to hold out; raise --ratio"
        )
    return (images[train], labels[train]), (images[held], labels[held])


def trigger_image(label: int, index: int, net: TriggerGenerator) -> str:
    return f"label{label}-{net.form}-{index}.png"


def trigger_writer(pool: dict[int, list[TriggerGenerator]], device: torch.device):
    """A folder of PNGs, one per recovered generator: 8 sampled triggers, enlarged to 32 px."""

    def write(loaded: LoadedModel, folder: Path) -> None:
        folder.mkdir()
        generator = torch.Generator().manual_seed(0)
        for label, nets in pool.items():
            for index, net in enumerate(nets):
                triggers = sample_triggers(net, 8, generator, device).cpu()
                triggers = F.interpolate(triggers, size=32, mode="nearest")
                save_image(triggers, folder / trigger_image(label, index, net), nrow=8, padding=2)

    return write


def run(job: DefenseJob) -> nn.Module:
    options = job.options
    recovery = settings_from_options(
        RecoverySettings, options, names=RECOVERY_NAMES, staircase=staircase(options["staircase"])
    )
    settings = settings_from_options(UnlearnSettings, options, names=UNLEARN_NAMES)
    (train_images, train_labels), held_out = split_clean(job.clean, options["holdout"], job.context)
    candidates = candidate_labels(options["labels"], job.num_classes)
    model = job.model.eval()
    started = time.perf_counter()
    pool, scan, scanned = recover_triggers(
        model, train_images, held_out, candidates, recovery, job.context
    )
    scan["recovery_s"] = time.perf_counter() - started
    job.details["baeraser"] = scan
    figure = trigger_figure(scanned, scan, job.context.device)
    if figure is not None:
        job.figures["triggers"] = figure
    if not pool:
        label, form, index = max(
            ((label, form, index) for label, row in scan["labels"].items()
             for form, index in row["anomaly_index"].items()),
            key=lambda suspect: suspect[2],
        )  # fmt: skip
        rate = scan["labels"][label]["success"][form][f"beta={recovery.staircase[0]}"]
        job.leave_unchanged(
            "no trigger found",
            f"no label's recovered trigger reached success {recovery.tau} or anomaly index "
            f"{recovery.anomaly} in its form (most suspect: label {label}, {form} trigger, "
            f"success {rate:.1%}, index {index:.2f})",
        )
        return model
    job.extra_outputs[TRIGGERS] = trigger_writer(pool, job.context.device)
    scan["trigger_images"] = [
        trigger_image(label, index, net)
        for label, nets in pool.items()
        for index, net in enumerate(nets)
    ]
    typical = {form: rule["median"] for form, rule in scan["rules"].items()}
    scan["unlearning_stop"] = {"stop_success": settings.stop_success, "typical": typical}
    purified, history = unlearn(
        model, pool, (train_images, train_labels), held_out, recovery, settings, job.context,
        typical=typical,
    )  # fmt: skip
    scan["unlearning"] = history
    return purified


@hookimpl
def register_defenses(register):
    register(
        Defense(
            name="baeraser",
            description="BAERASER (INFOCOM 2022): trigger recovery + gradient-ascent unlearning",
            run=run,
            extra_outputs=(TRIGGERS,),
            options=(
                Option("labels", str, "all", "candidate target labels: all, or e.g. 3,5"),
                *options_from_settings(
                    RecoverySettings,
                    RECOVERY_HELP,
                    names=RECOVERY_NAMES,
                    choices=TRIGGER_FORMS,
                    bounds=RECOVERY_BOUNDS,
                ),
                Option(
                    "holdout",
                    float,
                    0.2,
                    "fraction of the clean data held out to score triggers",
                    bounds=between(0, 1, min_open=True, max_open=True),
                ),
                *options_from_settings(
                    UnlearnSettings, UNLEARN_HELP, names=UNLEARN_NAMES, bounds=UNLEARN_BOUNDS
                ),
            ),
        )
    )
