"""No backdoor: the reference model of each training schedule. Its trigger changes nothing and it
is clean-label, so "poisoning" leaves every image and label as it was; its ASR is the rate at
which a clean model predicts the target anyway."""

from __future__ import annotations

from typing import Any

import numpy as np

from purify_backdoor import Attack, hookimpl


def stamp(images: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    return images.copy()


@hookimpl
def register_attacks(register):
    register(
        Attack(
            name="clean",
            description="no poisoning (reference model)",
            stamp=stamp,
            clean_label=True,
        )
    )
