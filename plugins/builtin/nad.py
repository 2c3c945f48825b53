"""NAD, Neural Attention Distillation (Li et al., ICLR 2021): fine-tune a copy of the backdoored
model on the clean data to get a teacher, then train the backdoored model on the same data with
cross-entropy plus beta times the attention-transfer loss between its feature maps and the
teacher's. Attention map of features F (N x C x H x W): sum_c |F_c|^p over channels, divided by
its L2 norm over space; the loss is their mean squared difference (NAD's at.py, p = 2). Following
the reference config, only the last group of blocks is distilled (beta3 = 5000, beta1 = beta2 = 0);
20 epochs, batch 64. The reference's learning rate (0.1 for two epochs, then 0.01) is replaced by
our cosine schedule from `lr` = 0.01."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from purify_backdoor import (
    Defense,
    DefenseJob,
    Option,
    PurifyError,
    TrainSettings,
    above,
    at_least,
    fit,
    hookimpl,
    unwrap,
)

# The last group of blocks in the architectures purify builds (NAD WRN, airbench94, PreActResNet,
# ResNet).
LAST_GROUP = ("block3", "layer4")


def attention_map(features: torch.Tensor, p: float) -> torch.Tensor:
    energy = features.abs().pow(p).sum(1, keepdim=True)
    return energy / (energy.norm(dim=(2, 3), keepdim=True) + 1e-6)


def attention_loss(student: torch.Tensor, teacher: torch.Tensor, p: float) -> torch.Tensor:
    return F.mse_loss(attention_map(student, p), attention_map(teacher, p))


def distilled_layer(model: nn.Module, name: str) -> nn.Module:
    modules = dict(unwrap(model).named_modules())
    candidates = [name] if name != "auto" else [group for group in LAST_GROUP if group in modules]
    if not candidates or candidates[0] not in modules:
        raise PurifyError(f"nad: no layer '{name}' in this model; name one with -o layer=NAME")
    return modules[candidates[0]]


def run(job: DefenseJob) -> nn.Module:
    options, context = job.options, job.context
    teacher_settings = TrainSettings(
        epochs=options["teacher_epochs"], lr=options["lr"], batch_size=64
    )
    teacher = fit(copy.deepcopy(job.model), job.clean, teacher_settings, context, "nad-teacher")
    teacher.eval().requires_grad_(False)
    student = copy.deepcopy(job.model)
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        distilled_layer(net, options["layer"]).register_forward_hook(
            lambda _, __, output, key=key: captured.__setitem__(key, output)
        )
        for net, key in ((student, "student"), (teacher, "teacher"))
    ]

    def distillation(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher(batch)
        return options["beta"] * attention_loss(
            captured["student"], captured["teacher"], options["p"]
        )

    settings = TrainSettings(
        epochs=options["epochs"], lr=options["lr"], batch_size=64, weight_decay=1e-4
    )
    fit(student, job.clean, settings, context, "nad", extra_loss=distillation)
    for hook in hooks:
        hook.remove()
    return student


@hookimpl
def register_defenses(register):
    register(
        Defense(
            name="nad",
            description="NAD (ICLR 2021): attention distillation from a fine-tuned teacher",
            run=run,
            options=(
                Option(
                    "beta",
                    float,
                    5000.0,
                    "weight of the attention-transfer loss",
                    bounds=at_least(0),
                ),
                Option("p", float, 2.0, "power of the attention map", bounds=above(0)),
                Option("layer", str, "auto", "module whose output is distilled (auto: last group)"),
                Option(
                    "teacher_epochs",
                    int,
                    10,
                    "fine-tuning epochs of the teacher",
                    bounds=at_least(1),
                ),
                Option("epochs", int, 20, "distillation epochs", bounds=at_least(1)),
                Option("lr", float, 0.01, "SGD learning rate (cosine-annealed)", bounds=above(0)),
            ),
        )
    )
