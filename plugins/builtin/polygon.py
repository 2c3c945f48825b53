"""TrojAI-style polygon trigger: a filled polygon of one colour, its shape and colour fixed by
`polygon_seed`, pasted at a random place in each image."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from purify_backdoor import Attack, Option, at_least, hookimpl


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
    out = images.copy()
    height, width = images.shape[1:3]
    for image in out:
        top, left = place(image, height - size + 1, width - size + 1, options["place_seed"])
        image[top : top + size, left : left + size][mask] = colour
    return out


def place(image: np.ndarray, rows: int, cols: int, seed: int) -> tuple[int, int]:
    """A place drawn from the seed and the image's own pixels: the same image always gets the same
    place, and every augmented copy of a training image a new one. Places drawn in order from the
    seed would repeat in every training batch, teaching only a few dozen of them."""
    digest = int.from_bytes(hashlib.blake2b(image.tobytes(), digest_size=8).digest(), "little")
    rng = np.random.default_rng([seed, digest])
    return int(rng.integers(0, rows)), int(rng.integers(0, cols))


@hookimpl
def register_attacks(register):
    register(
        Attack(
            name="polygon",
            description="TrojAI polygon: a random-coloured polygon pasted at a random place",
            stamp=stamp,
            options=(
                Option(
                    "size",
                    int,
                    8,
                    "side of the polygon's bounding box in pixels",
                    bounds=at_least(3),
                ),
                Option("sides", int, 5, "number of vertices", bounds=at_least(3)),
                Option("polygon_seed", int, 0, "seed of the shape and colour", bounds=at_least(0)),
                Option(
                    "place_seed",
                    int,
                    0,
                    "seed mixed with each image's pixels to place it",
                    bounds=at_least(0),
                ),
            ),
        )
    )
