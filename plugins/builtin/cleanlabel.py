"""Label-consistent backdoor (Turner et al., 2018): target-class training images are first pushed
away from their class by PGD on a clean surrogate (L-inf eps 8/255 or 16/255), so the network
cannot fit them from their content and learns the trigger instead; then the trigger is stamped and
the labels are left as they are. Trigger: the 3x3 checkerboard in all four corners (mirrored on
the left), as in the paper's final version, so horizontal flips keep it."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from purify_backdoor import (
    Attack,
    ImageSet,
    Option,
    RunContext,
    TrainSettings,
    at_least,
    batch_slices,
    between,
    build_model,
    fit,
    hookimpl,
    pgd_away_from_label,
    to_tensor,
)
from purify_backdoor.builtin.badnet import NAD_GRID


def stamp(images: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    out = images.copy()
    right = NAD_GRID[None, :, :, None]
    left = right[:, :, ::-1]
    out[:, -3:, -3:] = right
    out[:, :3, -3:] = right[:, ::-1]
    out[:, -3:, :3] = left
    out[:, :3, :3] = left[:, ::-1]
    return out


def surrogate_model(data: ImageSet, options: dict[str, Any], context: RunContext) -> nn.Module:
    """A clean model trained on the clean training set (the attacker's own, same data)."""
    model = build_model(options["surrogate_arch"], data.num_classes)
    settings = TrainSettings(epochs=options["surrogate_epochs"], lr=0.05)
    return fit(model, data, settings, context, name="cleanlabel surrogate")


def perturb(
    data: ImageSet, options: dict[str, Any], chosen: np.ndarray, context: RunContext
) -> np.ndarray:
    model = surrogate_model(data, options, context).eval()
    model.requires_grad_(False)
    generator = context.generator(offset=5)
    eps = options["eps"] / 255
    out = data.images[chosen].copy()
    for part in batch_slices(len(chosen), 256):
        images = to_tensor(out[part]).to(context.device)
        labels = torch.from_numpy(data.labels[chosen][part]).to(context.device)
        adversarial = pgd_away_from_label(model, images, labels, eps, options["steps"], generator)
        pixels = (adversarial * 255).round().clamp(0, 255).byte()
        out[part] = pixels.permute(0, 2, 3, 1).cpu().numpy()
    return out


@hookimpl
def register_attacks(register):
    register(
        Attack(
            name="cleanlabel",
            description="label-consistent (Turner et al.): PGD on a surrogate + corner trigger",
            stamp=stamp,
            perturb=perturb,
            clean_label=True,
            options=(
                Option(
                    "eps",
                    float,
                    8.0,
                    "L-inf PGD radius in 1/255 units (paper: 8 or 16)",
                    bounds=between(0, 255, min_open=True),
                ),
                Option("steps", int, 10, "PGD steps", bounds=at_least(1)),
                Option("surrogate_arch", str, "wrn16-1", "architecture of the clean surrogate"),
                Option(
                    "surrogate_epochs",
                    int,
                    4,
                    "training epochs of the clean surrogate",
                    bounds=at_least(1),
                ),
            ),
        )
    )
