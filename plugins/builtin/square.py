"""The NAD code base's "square" trigger: a white 3x3 patch at rows and columns 28..30 of a 32x32
image (one pixel in from the bottom-right corner)."""

from __future__ import annotations

from typing import Any

import numpy as np

from purify_backdoor import Attack, hookimpl


def stamp(images: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    out = images.copy()
    height, width = images.shape[1:3]
    out[:, height - 4 : height - 1, width - 4 : width - 1, :] = 255
    return out


@hookimpl
def register_attacks(register):
    register(
        Attack(
            name="square",
            description="NAD square: white 3x3 patch at rows/cols 28..30 (32x32)",
            stamp=stamp,
        )
    )
