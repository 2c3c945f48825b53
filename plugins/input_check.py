"""A model read with the wrong input convention (normalization, channel order, value range, crop)
still runs and still returns logits: only its accuracy gives it away. Before any defense, it is
measured on a few hundred of the user's clean images, and a score near chance stops the run."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from purify_backdoor.data.imageset import ImageSet
from purify_backdoor.errors import PurifyError
from purify_backdoor.training import predict_logits

CHECK_IMAGES = 256
MIN_IMAGES = 20  # fewer cannot tell a working model from chance: measured, reported, not judged
# "Near chance": less than a tenth of the way from chance to perfect. 19% for 10 classes, 10.1%
# for 1000; a correctly read backdoored model scores far above it on clean images.
MARGIN = 0.1
FIX_HINT = (
    "the likely causes are normalization (--normalize NAME or --mean/--std), channel order "
    "(--bgr), value range (--input-scale 255) or crop (TrojAI: --trojai-round N)"
)


def accuracy_floor(num_classes: int) -> float:
    chance = 1.0 / num_classes
    return chance + MARGIN * (1.0 - chance)


def check_clean_accuracy(
    model: nn.Module, images: ImageSet, device: torch.device, seed: int, accept_low: bool = False
) -> dict[str, Any]:
    """The model's accuracy on up to CHECK_IMAGES seeded picks of `images`, as a report record;
    a PurifyError when it is near chance, unless `accept_low`."""
    picks = np.sort(np.random.default_rng(seed).permutation(len(images))[:CHECK_IMAGES])
    logits = predict_logits(model, images.images[picks], device)
    correct = logits.argmax(1).numpy() == images.labels[picks]
    measured = float(correct.mean()) if len(picks) else 0.0
    floor = accuracy_floor(images.num_classes)
    record = {
        "images": int(len(picks)),
        "clean_acc": measured,
        "chance": 1.0 / images.num_classes,
        "floor": floor,
        "low": measured < floor and len(picks) >= MIN_IMAGES,
    }
    record["accepted_low"] = accept_low and record["low"]
    if record["low"] and not accept_low:
        raise PurifyError(
            f"the model scores {100 * measured:.1f}% on {len(picks)} of your clean images, near "
            f"chance ({100 / images.num_classes:.1f}%), so it is probably reading them wrongly; "
            f"{FIX_HINT}; --accept-low-accuracy runs anyway"
        )
    return record
