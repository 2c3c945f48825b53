"""BAERASER's trigger generator (MESA architecture, as in the authors' code): noise z ~ U[0,1]^64 in
four chunks, each fed into the next fully connected layer beside the previous layer's output, batch
norm and leaky ReLU, sigmoid output. Two trigger forms: `patch` (the authors' code: a p x p patch
pasted at one random place per batch) and `additive` (the issue's x + G(z), an image-sized pattern
bounded by eps in L-inf, for blended/SIG-like triggers)."""

from __future__ import annotations

import torch
from torch import nn

NOISE_SIZE = 64
FORMS = ("patch", "additive")


class TriggerGenerator(nn.Module):
    """`form` says how its triggers are stamped (see `apply_trigger`)."""

    def __init__(
        self, trigger_shape: tuple[int, int, int], hidden: int, form: str = "patch"
    ) -> None:
        super().__init__()
        self.trigger_shape = trigger_shape
        self.form = form
        chunk = NOISE_SIZE // 4
        out_size = trigger_shape[0] * trigger_shape[1] * trigger_shape[2]

        def layer(inputs: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(inputs, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2)
            )

        self.layers = nn.ModuleList([layer(chunk), layer(hidden + chunk), layer(hidden + chunk)])
        self.out = nn.Linear(hidden + chunk, out_size)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        chunks = noise.chunk(4, dim=1)
        hidden = self.layers[0](chunks[0])
        for layer, chunk in zip(self.layers[1:], chunks[1:3], strict=True):
            hidden = layer(torch.cat([hidden, chunk], 1))
        out = self.out(torch.cat([hidden, chunks[3]], 1))
        return torch.sigmoid(out).view(-1, *self.trigger_shape)


def apply_trigger(
    images: torch.Tensor, triggers: torch.Tensor, mode: str, eps: float, generator: torch.Generator
) -> torch.Tensor:
    """Stamp one trigger per image: `patch` at one random place for the batch (authors' code),
    `additive` as x + eps * (2 t - 1), clipped to [0, 1]."""
    if mode == "additive":
        return (images + eps * (2 * triggers - 1)).clamp(0, 1)
    size = triggers.shape[-1]
    top, left = (
        int(torch.randint(0, images.shape[dim] - size + 1, (1,), generator=generator))
        for dim in (2, 3)
    )
    out = images.clone()
    out[:, :, top : top + size, left : left + size] = triggers
    return out


def sample_noise(count: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(count, NOISE_SIZE, generator=generator).to(device)
