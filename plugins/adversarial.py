"""Untargeted adversarial examples, shared by the label-consistent attack (perturbing its poisoned
images) and Clean & Compact (adversarial synthetic data as surrogate poisoned data)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pgd_away_from_label(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, steps: int,
    generator: torch.Generator,
) -> torch.Tensor:  # fmt: skip
    """Untargeted L-inf PGD with a random start (Madry et al.): maximise the surrogate's loss."""
    step = 2.5 * eps / steps
    noise = (torch.rand(images.shape, generator=generator) * 2 - 1) * eps
    adversarial = (images + noise.to(images.device)).clamp(0, 1)
    for _ in range(steps):
        adversarial.requires_grad_(True)
        loss = F.cross_entropy(model(adversarial), labels)
        (gradient,) = torch.autograd.grad(loss, adversarial)
        with torch.no_grad():
            adversarial = adversarial + step * gradient.sign()
            adversarial = (images + (adversarial - images).clamp(-eps, eps)).clamp(0, 1)
    return adversarial.detach()
