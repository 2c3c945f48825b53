"""Per-channel statistics mu_c, sigma_c of the TEACHER's activations, collected in one pass over
the augmented clean data before cloning and then frozen (the reference's `--keepstat`). They are not
the BatchNorm running statistics: every hooked layer, convolutions included, gets its own."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from purify_backdoor.medic.layers import ActivationRecorder


@dataclass
class _Running:
    total: torch.Tensor
    squares: torch.Tensor
    count: int
    ndim: int


def sigma_floor(sigma: torch.Tensor) -> torch.Tensor:
    """A layer's per-channel sigma, floored at rms(sigma) / sqrt(C). Eq. 1 divides by sigma
    squared, so a dead channel (sigma 0: a BatchNorm weight a pruning defense set to 0) would
    dominate the loss, and it is trivial to clone. At initialisation the clone's error on a
    channel is about the layer's typical spread s, so under the floor s / sqrt(C) one dead channel
    weighs at most C live ones: it can at most double its layer's loss. For C of 16 to 768 the
    floor is 0.25 to 0.04 of the typical spread, the scale of the reference's eps (about 0.02 at
    unit scale). A layer that is constant throughout has nothing to normalise: sigma 1."""
    typical = sigma.square().mean().sqrt()
    if typical == 0:
        return torch.ones_like(sigma)
    return sigma.clamp_min(typical / sigma.numel() ** 0.5)


@torch.no_grad()
def teacher_statistics(
    teacher: torch.nn.Module,
    recorder: ActivationRecorder,
    batches: Iterable[torch.Tensor],
    axes: list[int],
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(mu, sigma) per hooked layer over its channel axis (`axes`, see layers.py), shaped to
    broadcast against the layer's output."""
    running: list[_Running] = []
    for batch in batches:
        teacher(batch)
        for index, output in enumerate(recorder.take()):
            channels = output.movedim(axes[index], 0)
            rows = channels.double().reshape(channels.shape[0], -1)
            if index == len(running):
                zeros = torch.zeros_like(rows[:, 0])
                running.append(_Running(zeros, zeros.clone(), 0, output.ndim))
            running[index].total += rows.sum(1)
            running[index].squares += rows.square().sum(1)
            running[index].count += rows.shape[1]
    stats = []
    for layer, axis in zip(running, axes, strict=True):
        mean = layer.total / layer.count
        variance = (layer.squares / layer.count - mean.square()).clamp_min(0)
        shape = [1] * layer.ndim
        shape[axis] = -1
        sigma = sigma_floor(variance.sqrt())
        stats.append((mean.float().view(shape), sigma.float().view(shape)))
    return stats
