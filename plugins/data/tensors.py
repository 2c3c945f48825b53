"""uint8 images to float tensors, batching and the standard training augmentation, vectorised so a
whole batch is augmented with per-image random choices in a few tensor ops."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [0, 1] (what every model in purify takes)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


def batch_slices(count: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, count, batch_size):
        yield slice(start, min(start + batch_size, count))


def shuffled_batches(
    count: int, batch_size: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    order = torch.randperm(count, generator=generator)
    for part in batch_slices(count, batch_size):
        yield order[part]


def random_crop_flip(
    batch: torch.Tensor, generator: torch.Generator, padding: int = 4, flip: bool = True
) -> torch.Tensor:
    """Random crop after zero padding, and horizontal flip with probability 1/2, per image."""
    n, _, height, width = batch.shape
    padded = F.pad(batch, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(height)[None, :]).to(batch.device)
    cols = (dx[:, None] + torch.arange(width)[None, :]).to(batch.device)
    if flip:
        flipped = torch.rand(n, generator=generator) < 0.5
        cols = torch.where(flipped[:, None].to(batch.device), cols.flip(1), cols)
    index = torch.arange(n, device=batch.device)[:, None, None]
    # padded[n, :, rows, cols] gathered per image -> (N, H, W, C), back to NCHW.
    out = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def random_rotate(
    batch: torch.Tensor, generator: torch.Generator, max_degrees: float
) -> torch.Tensor:
    """Rotation by a uniform angle in [-max_degrees, max_degrees] per image (bilinear, zeros)."""
    n = batch.shape[0]
    angles = (torch.rand(n, generator=generator) * 2 - 1) * max_degrees * torch.pi / 180
    cos, sin = torch.cos(angles), torch.sin(angles)
    zeros = torch.zeros(n)
    theta = torch.stack([torch.stack([cos, -sin, zeros], 1), torch.stack([sin, cos, zeros], 1)], 1)
    grid = F.affine_grid(theta.to(batch), list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, align_corners=False)
