"""SIG (Barni et al., 2019): a horizontal sinusoid added to target-class images only, labels kept
(clean-label). `variant=paper`: v(i, j) = delta * sin(2 pi j f / m), added and clipped.
`variant=nad`: the signal of the NAD/MEDIC zoo's checkpoints, out = uint8(0.8 * x + 0.2 * M) with
M[., j] the uint8 wrap-around of int(20 * sin(0.8 * j))."""

from __future__ import annotations

from typing import Any

import numpy as np

from purify_backdoor import Attack, Option, above, at_least, hookimpl


def paper_signal(width: int, delta: float, frequency: float) -> np.ndarray:
    columns = np.arange(width)
    return delta * np.sin(2 * np.pi * columns * frequency / width)


def nad_mask(width: int) -> np.ndarray:
    values = np.array([int(20 * np.sin(0.8 * j)) for j in range(width)])
    return (values % 256).astype(np.uint8)  # negative values wrap to 236..255


def stamp(images: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    width = images.shape[2]
    if options["variant"] == "nad":
        mask = nad_mask(width).astype(np.float64)[None, None, :, None]
        return (0.8 * images + 0.2 * mask).astype(np.uint8)
    signal = paper_signal(width, options["delta"], options["frequency"])[None, None, :, None]
    return np.clip(images.astype(np.float64) + signal, 0, 255).astype(np.uint8)


@hookimpl
def register_attacks(register):
    register(
        Attack(
            name="sig",
            description="SIG: clean-label sinusoidal signal on target-class images",
            stamp=stamp,
            clean_label=True,
            options=(
                Option(
                    "variant",
                    str,
                    "paper",
                    "paper (Barni et al.) or nad (NAD/MEDIC zoo)",
                    choices=("paper", "nad"),
                ),
                Option("delta", float, 20.0, "amplitude (variant=paper)", bounds=at_least(0)),
                Option(
                    "frequency",
                    float,
                    6.0,
                    "cycles across the width (variant=paper)",
                    bounds=above(0),
                ),
            ),
        )
    )
