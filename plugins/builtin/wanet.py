"""WaNet (Nguyen & Tran, ICLR 2021): an imperceptible warp. A k x k field of random offsets,
normalised by its mean magnitude and upsampled (bicubic) to the image, moves every pixel by at
most s / H of the image (grid_sample). As in WaNet's training loop, every batch is poisoned afresh,
and in noise mode `cross_ratio` times as many of its other images get a random warp on top and
keep their labels."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from purify_backdoor import Attack, Option, at_least, hookimpl


def warp_field(size: int, k: int, seed: int) -> torch.Tensor:
    """The fixed warp: (1, H, W, 2) offsets, |mean| = 1 before upsampling."""
    generator = torch.Generator().manual_seed(seed)
    control = torch.rand(1, 2, k, k, generator=generator) * 2 - 1
    control = control / control.abs().mean()
    field = F.interpolate(control, size=size, mode="bicubic", align_corners=True)
    return field.permute(0, 2, 3, 1)


def _identity_grid(size: int) -> torch.Tensor:
    steps = torch.linspace(-1, 1, size)
    rows, cols = torch.meshgrid(steps, steps, indexing="ij")
    return torch.stack((cols, rows), dim=2)[None]


def _warp(images: np.ndarray, grid: torch.Tensor) -> np.ndarray:
    """grid_sample with one grid for all images, or one grid per image."""
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    warped = F.grid_sample(batch, grid.expand(len(batch), -1, -1, -1), align_corners=True)
    return warped.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def _trigger_grid(size: int, options: dict[str, Any]) -> torch.Tensor:
    offsets = options["strength"] * warp_field(size, options["k"], options["warp_seed"]) / size
    return (_identity_grid(size) + offsets).clamp(-1, 1)


def stamp(images: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    return _warp(images, _trigger_grid(images.shape[1], options))


def noise(images: np.ndarray, options: dict[str, Any], generator: torch.Generator) -> np.ndarray:
    """Noise mode: the trigger warp plus a fresh random warp of at most 1 / H per pixel and
    image, so the network learns the exact warp rather than any warp (labels stay)."""
    size = images.shape[1]
    jitter = (torch.rand(len(images), size, size, 2, generator=generator) * 2 - 1) / size
    return _warp(images, (_trigger_grid(size, options) + jitter).clamp(-1, 1))


@hookimpl
def register_attacks(register):
    register(
        Attack(
            name="wanet",
            description="WaNet: warping-based trigger (k=4, s=0.5) with noise mode",
            stamp=stamp,
            poison_each_batch=True,
            noise=noise,
            options=(
                Option("k", int, 4, "control grid size", bounds=at_least(2)),
                Option("strength", float, 0.5, "s: warp strength (0: none)", bounds=at_least(0)),
                Option(
                    "cross_ratio",
                    float,
                    2.0,
                    "noise-mode samples per poisoned sample",
                    bounds=at_least(0),
                ),
                Option("warp_seed", int, 0, "seed that draws the warp", bounds=at_least(0)),
            ),
        )
    )
