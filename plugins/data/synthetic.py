"""A small labelled image data set the package draws itself, so the demo and the tests need no
download: ten classes, each a shape (disc, square, ring, cross, bar) in one of two colour families,
at a random place and size, on a noisy background."""

from __future__ import annotations

import numpy as np

from purify_backdoor.data.imageset import ImageSet

SHAPES = ("disc", "square", "ring", "cross", "bar")
PALETTES = ("warm", "cool")
CLASSES = tuple(f"{palette}-{shape}" for palette in PALETTES for shape in SHAPES)


def _mask(
    shape: str, size: int, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, radius: float
) -> np.ndarray:
    dy, dx = yy - cy, xx - cx
    distance = np.sqrt(dy**2 + dx**2)
    thickness = max(1.0, radius / 3)
    if shape == "disc":
        return distance <= radius
    if shape == "square":
        return (np.abs(dy) <= radius * 0.8) & (np.abs(dx) <= radius * 0.8)
    if shape == "ring":
        return (distance <= radius) & (distance >= radius - thickness)
    if shape == "cross":
        return ((np.abs(dy) <= thickness / 2) | (np.abs(dx) <= thickness / 2)) & (
            distance <= radius
        )
    return (np.abs(dy) <= thickness / 2) & (np.abs(dx) <= radius)


def _colour(palette: str, rng: np.random.Generator) -> np.ndarray:
    base = np.array([220, 90, 40]) if palette == "warm" else np.array([40, 110, 220])
    return np.clip(base + rng.integers(-35, 36, size=3), 0, 255)


def synthetic_images(count: int, size: int, seed: int) -> ImageSet:
    """`count` images of `size` x `size`, classes balanced, deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count, dtype=np.int64) % len(CLASSES)
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    for index, label in enumerate(labels):
        palette, shape = CLASSES[label].split("-")
        background = rng.integers(60, 190, size=3)
        image = background + rng.normal(0, 18, size=(size, size, 3))
        radius = rng.uniform(0.22, 0.38) * size
        cy, cx = rng.uniform(radius, size - radius, size=2)
        mask = _mask(shape, size, yy, xx, cy, cx, radius)
        image[mask] = _colour(palette, rng) + rng.normal(0, 10, size=(int(mask.sum()), 3))
        images[index] = np.clip(image, 0, 255).astype(np.uint8)
    return ImageSet(images, labels, CLASSES)
