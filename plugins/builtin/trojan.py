"""Trojaning attack trigger (Liu et al., NDSS 2018): a small fixed pattern added at a fixed place.
The NAD/MEDIC zoo used the optimised pattern `best_square_trigger_cifar10.npz` (key `x`, shape
(3, H, W), added to the image); pass it as `trigger_file` to reproduce those models. Without it, a
stand-in is used: a seeded random square of `size` pixels in the bottom-right corner, added the
same way. The stand-in is not the optimised trigger of the paper. Sums are clipped to 0..255 (the
NAD code casts to uint8 before clipping, which wraps; we do not copy that)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from purify_backdoor import Attack, Option, PurifyError, at_least, hookimpl


def trigger_pattern(height: int, width: int, options: dict[str, Any]) -> np.ndarray:
    """The additive pattern, (H, W, 3) float."""
    if options["trigger_file"]:
        path = Path(options["trigger_file"])
        try:
            with np.load(path, allow_pickle=False) as archive:
                pattern = np.transpose(archive["x"], (1, 2, 0)).astype(np.float64)
        except (OSError, KeyError, ValueError) as error:
            raise PurifyError(
                f"cannot read trojan trigger {path}: {error}; it must be an .npz with 'x' (3, H, W)"
            ) from None
        if pattern.shape != (height, width, 3):
            raise PurifyError(
                f"trojan trigger {path} is {pattern.shape[:2]}, images are {(height, width)}"
            )
        return pattern
    size = options["size"]
    pattern = np.zeros((height, width, 3))
    rng = np.random.default_rng(options["pattern_seed"])
    pattern[height - size :, width - size :] = rng.integers(0, 256, size=(size, size, 3))
    return pattern


def stamp(images: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    pattern = trigger_pattern(*images.shape[1:3], options)
    return np.clip(images + pattern[None], 0, 255).astype(np.uint8)


@hookimpl
def register_attacks(register):
    register(
        Attack(
            name="trojan",
            description="Trojaning-attack pattern added at a fixed place (zoo file or stand-in)",
            stamp=stamp,
            options=(
                Option("trigger_file", str, "", "NAD's best_square_trigger_cifar10.npz, if held"),
                Option("size", int, 4, "side of the stand-in square", bounds=at_least(1)),
                Option("pattern_seed", int, 0, "seed of the stand-in pattern", bounds=at_least(0)),
            ),
        )
    )
