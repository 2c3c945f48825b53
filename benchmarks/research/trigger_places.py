"""Where the fast-profile models' patch triggers fire: the success (share of non-target test
images sent to target 5) of the real 3x3 NAD grid stamped at one place at a time, on the fast
badnet (trained with the grid in the bottom-right corner, stamped after augmentation) and the fast
clean-label model (the checkerboard in all four corners, mirrored, stamped after augmentation).
Behind BAERASER's `corner` trigger form (docs/baeraser.md). Writes
docs/results/trigger_places.json.

    python benchmarks/research/trigger_places.py
"""

from __future__ import annotations

import json

import numpy as np
import torch
from shared_badnet import ROOT, load, percent, portable

from purify_backdoor.builtin.badnet import NAD_GRID
from purify_backdoor.training import predict_logits

MODELS = ("badnet", "cleanlabel")
TARGET = 5
# (name, top row, left column) of the 3x3 stamp on a 32x32 image
PLACES = (
    ("bottom-right", 29, 29),
    ("one pixel in", 28, 28),
    ("two pixels in", 27, 27),
    ("bottom-left", 29, 0),
    ("top-right", 0, 29),
    ("top-left", 0, 0),
    ("centre", 14, 14),
)


def stamped(images: np.ndarray, row: int, column: int) -> np.ndarray:
    """The grid at (row, column), mirrored towards the nearest edges as the clean-label stamp
    mirrors it in each corner."""
    grid = NAD_GRID[:, :, None]
    if column == 0:
        grid = grid[:, ::-1]
    if row == 0:
        grid = grid[::-1]
    out = images.copy()
    out[:, row : row + 3, column : column + 3] = grid
    return out


def main() -> None:
    rows = []
    for name in MODELS:
        checkpoint = ROOT / "benchmarks" / "models" / "fast" / f"{name}.pth.tar"
        model, test, _ = load(1000, checkpoint)
        others = test.images[test.labels != TARGET]
        success = {}
        for place, row, column in PLACES:
            logits = predict_logits(model, stamped(others, row, column), torch.device("cpu"))
            success[place] = percent(float((logits.argmax(1).numpy() == TARGET).mean()))
        rows.append({"model": portable(checkpoint), "images": len(others), "success": success})
        print(name, success)
    out = ROOT / "docs" / "results" / "trigger_places.json"
    out.write_text(json.dumps({"target": TARGET, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
