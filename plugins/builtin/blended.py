"""Blended injection (Chen et al., 2017): out = (1 - alpha) * image + alpha * pattern, with a
fixed random pattern drawn from `pattern_seed`, so the spec alone regenerates it."""

from __future__ import annotations

from typing import Any

import numpy as np

from purify_backdoor import Attack, Option, at_least, between, hookimpl


def blend_pattern(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def stamp(images: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    pattern = blend_pattern(*images.shape[1:3], options["pattern_seed"]).astype(np.float32)
    alpha = options["alpha"]
    mixed = (1 - alpha) * images.astype(np.float32) + alpha * pattern
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


@hookimpl
def register_attacks(register):
    register(
        Attack(
            name="blended",
            description="Blended: a fixed random pattern mixed in with weight alpha",
            stamp=stamp,
            options=(
                Option(
                    "alpha",
                    float,
                    0.2,
                    "blend weight of the pattern",
                    bounds=between(0, 1),
                ),
                Option("pattern_seed", int, 0, "seed that draws the pattern", bounds=at_least(0)),
            ),
        )
    )
