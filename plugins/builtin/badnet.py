"""BadNets (Gu et al., 2017): a fixed patch stamped on the image. `pattern=grid` is the NAD/MEDIC
3x3 checkerboard in the bottom-right corner that the shared MEDIC checkpoint was trained with;
`pattern=patch` is a solid square of configurable size, colour and place."""

from __future__ import annotations

from typing import Any

import numpy as np

from purify_backdoor import Attack, Option, PurifyError, at_least, hookimpl

# Rows then columns of the bottom-right 3x3 corner, as in the NAD code's gridTrigger (all channels).
NAD_GRID = np.array([[0, 0, 255], [0, 255, 0], [255, 0, 255]], dtype=np.uint8)


def _colour(text: str) -> np.ndarray:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise PurifyError(f"badnet colour must be R,G,B with values 0..255, got {text!r}")
    return np.array(values, dtype=np.uint8)


def stamp(images: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    out = images.copy()
    height, width = images.shape[1:3]
    if options["pattern"] == "grid":
        out[:, height - 3 :, width - 3 :, :] = NAD_GRID[None, :, :, None]
        return out
    size = options["size"]
    if not 1 <= size <= min(height, width):
        raise PurifyError(f"badnet patch size must be 1..{min(height, width)}, got {size}")
    row = height - size if options["row"] < 0 else options["row"]
    col = width - size if options["col"] < 0 else options["col"]
    if row + size > height or col + size > width:
        raise PurifyError(f"badnet patch at row {row}, col {col} does not fit {height}x{width}")
    out[:, row : row + size, col : col + size, :] = _colour(options["colour"])
    return out


@hookimpl
def register_attacks(register):
    register(
        Attack(
            name="badnet",
            description="BadNets patch trigger: the NAD/MEDIC 3x3 grid, or a solid square",
            stamp=stamp,
            options=(
                Option(
                    "pattern",
                    str,
                    "grid",
                    "grid (NAD/MEDIC checkerboard) or patch",
                    choices=("grid", "patch"),
                ),
                Option("size", int, 3, "patch side in pixels (pattern=patch)", bounds=at_least(1)),
                Option("colour", str, "255,255,255", "patch colour R,G,B (pattern=patch)"),
                Option(
                    "row",
                    int,
                    -1,
                    "patch top row; -1 = touching the bottom edge",
                    bounds=at_least(-1),
                ),
                Option(
                    "col",
                    int,
                    -1,
                    "patch left column; -1 = touching the right edge",
                    bounds=at_least(-1),
                ),
            ),
        )
    )
