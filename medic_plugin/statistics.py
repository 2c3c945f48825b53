"""Per-channel statistics mu_c, sigma_c of the TEACHER's activations, collected in one pass over
the augmented clean data before cloning and then frozen (the reference's `--keepstat`). They are not
the BatchNorm running statistics: every hooked layer, convolutions included, gets its own."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from purify_backdoor.medic.layers import ActivationRecorder

SIGMA_FLOOR = 1e-5  # dead channels have sigma 0; the reference adds a similar eps


@dataclass
class _Running:
    total: torch.Tensor
    squares: torch.Tensor
    count: int
    ndim: int


@torch.no_grad()
def teacher_statistics(
    teacher: torch.nn.Module, recorder: ActivationRecorder, batches: Iterable[torch.Tensor]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(mu, sigma) per hooked layer, shaped to broadcast against its (N, C, ...) output."""
    running: list[_Running] = []
    for batch in batches:
        teacher(batch)
        for index, output in enumerate(recorder.take()):
            rows = output.double().transpose(0, 1).reshape(output.shape[1], -1)
            if index == len(running):
                zeros = torch.zeros_like(rows[:, 0])
                running.append(_Running(zeros, zeros.clone(), 0, output.ndim))
            running[index].total += rows.sum(1)
            running[index].squares += rows.square().sum(1)
            running[index].count += rows.shape[1]
    stats = []
    for layer in running:
        mean = layer.total / layer.count
        variance = (layer.squares / layer.count - mean.square()).clamp_min(0)
        shape = (1, -1) + (1,) * (layer.ndim - 2)
        sigma = variance.sqrt() + SIGMA_FLOOR
        stats.append((mean.float().view(shape), sigma.float().view(shape)))
    return stats
