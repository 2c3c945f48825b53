"""Plugins always see a model taking RGB in [0, 1]; a stored network that expects another input
convention (mean/std normalization, BGR, a 0-255 range, a crop) is wrapped in an `InputWrapper`,
and unwrapped again when it is saved."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class InputWrapper(nn.Module):
    """Turns [0, 1] RGB images into what `inner`, the stored network, was trained on."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner


class Normalized(InputWrapper):
    """x -> (scale * x, channels reversed when `bgr`, - mean) / std."""

    def __init__(
        self,
        inner: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        bgr: bool = False,
        scale: float = 1.0,
    ) -> None:
        super().__init__(inner)
        self.bgr, self.scale = bgr, scale
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.scale if self.scale != 1.0 else x
        x = x.flip(1) if self.bgr else x
        return self.inner((x - self.mean) / self.std)


def unwrap(model: nn.Module) -> nn.Module:
    """The stored network inside any input wrapper."""
    while isinstance(model, InputWrapper):
        model = model.inner
    return model


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The stored network's state dict, on CPU, detached: what goes into a checkpoint file."""
    return {key: value.detach().cpu().clone() for key, value in unwrap(model).state_dict().items()}
