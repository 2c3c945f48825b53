"""Plugins always see a model taking RGB in [0, 1]; a stored network that expects mean/std
normalization is wrapped, and unwrapped again when it is saved."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Normalized(nn.Module):
    def __init__(self, inner: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner((x - self.mean) / self.std)


def unwrap(model: nn.Module) -> nn.Module:
    """The stored network inside any normalization wrapper."""
    return model.inner if isinstance(model, Normalized) else model


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The stored network's state dict, on CPU, detached: what goes into a checkpoint file."""
    return {key: value.detach().cpu().clone() for key, value in unwrap(model).state_dict().items()}
