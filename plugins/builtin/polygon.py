"""TrojAI-style polygon trigger: a filled polygon of one colour, its shape and colour fixed by
`polygon_seed`, pasted at a random place in each image (places drawn from `place_seed` in order)."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from plugins import Attack, Option, hookimpl


def polygon_mask(size: int, sides: int, seed: int) -> np.ndarray:
    """A star-shaped random polygon inside a size x size box."""
    rng = np.random.default_rng(seed)
    angles = np.sort(rng.uniform(0, 2 * np.pi, sides))
    radii = rng.uniform(0.5, 1.0, sides) * (size - 1) / 2
    centre = (size - 1) / 2
    points = [
        (centre + r * np.cos(a), centre + r * np.sin(a)) for r, a in zip(radii, angles, strict=True)
    ]
    canvas = Image.new("L", (size, size), 0)
    ImageDraw.Draw(canvas).polygon(points, fill=255)
    return np.asarray(canvas) > 0


def stamp(images: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    size = options["size"]
    mask = polygon_mask(size, options["sides"], options["polygon_seed"])
    colour = np.random.default_rng(options["polygon_seed"]).integers(0, 256, size=3)
    places = np.random.default_rng(options["place_seed"])
    out = images.copy()
    height, width = images.shape[1:3]
    for image in out:
        top = places.integers(0, height - size + 1)
        left = places.integers(0, width - size + 1)
        image[top : top + size, left : left + size][mask] = colour
    return out


@hookimpl
def register_attacks(register):
    register(
        Attack(
            name="polygon",
            description="TrojAI polygon: a random-coloured polygon pasted at a random place",
            stamp=stamp,
            options=(
                Option("size", int, 8, "side of the polygon's bounding box in pixels"),
                Option("sides", int, 5, "number of vertices"),
                Option("polygon_seed", int, 0, "seed of the shape and colour"),
                Option("place_seed", int, 0, "seed of the places"),
            ),
        )
    )
