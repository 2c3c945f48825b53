"""TrojAI-style instagram filters as the trigger: a global colour transform of the whole image.
TrojAI applied ImageMagick versions; these are numpy approximations of the same looks (channel
curves, saturation, contrast, vignette), named after them."""

from __future__ import annotations

from typing import Any

import numpy as np

from purify_backdoor import Attack, Option, hookimpl


def _saturate(x: np.ndarray, amount: float) -> np.ndarray:
    grey = x.mean(axis=-1, keepdims=True)
    return grey + amount * (x - grey)


def _contrast(x: np.ndarray, amount: float) -> np.ndarray:
    return 0.5 + amount * (x - 0.5)


def _vignette(x: np.ndarray, strength: float) -> np.ndarray:
    height, width = x.shape[1:3]
    rows = np.linspace(-1, 1, height)[:, None]
    cols = np.linspace(-1, 1, width)[None, :]
    falloff = 1 - strength * np.clip(rows**2 + cols**2, 0, 2) / 2
    return x * falloff[None, :, :, None]


FILTERS = {
    "gotham": lambda x: _contrast(_saturate(x, 0.1), 1.3) * np.array([0.95, 0.98, 1.08]),
    "nashville": lambda x: _contrast(x, 0.85) * np.array([1.12, 1.0, 0.82]) + 0.06,
    "kelvin": lambda x: np.clip(x * np.array([1.25, 1.05, 0.75]), 0, 1) ** 0.9,
    "lomo": lambda x: _vignette(_contrast(_saturate(x, 1.4), 1.3), 0.8),
    "toaster": lambda x: _vignette(_contrast(x, 1.2) * np.array([1.2, 0.95, 0.8]) + 0.04, 0.6),
}


def stamp(images: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    filtered = FILTERS[options["filter"]](images.astype(np.float64) / 255)
    return np.clip(np.rint(filtered * 255), 0, 255).astype(np.uint8)


@hookimpl
def register_attacks(register):
    register(
        Attack(
            name="filter",
            description="TrojAI instagram filter (gotham, nashville, kelvin, lomo, toaster)",
            stamp=stamp,
            options=(Option("filter", str, "gotham", "which filter", choices=tuple(FILTERS)),),
        )
    )
