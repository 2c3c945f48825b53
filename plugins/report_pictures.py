"""What the HTML report shows of the models themselves, kept in the JSON report as data: per-class
clean accuracy and where triggered images go, before and after (from the evaluators' metrics), and
a strip of test images with each model's prediction."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from torch import nn

from purify_backdoor.data.imageset import ImageSet
from purify_backdoor.figures import png_from_array
from purify_backdoor.plugin_types import AttackSpec, RunContext, TriggeredSet
from purify_backdoor.training import predict_logits

STRIP_IMAGES = 8
STRIP_PIXELS = 96  # images are enlarged (or shrunk) to about this many pixels a side


def breakdown(metrics: dict[str, float], num_classes: int) -> dict[str, Any]:
    """Per-class clean accuracy, and the share of triggered images predicted as each class (the
    row of the confusion matrix that shows the backdoor's pull towards its target), from the
    evaluators' `class_acc/<k>` and `triggered_to/<k>` entries: no inference of its own."""
    result: dict[str, Any] = {
        "per_class_acc": [metrics.get(f"class_acc/{label}") for label in range(num_classes)]
    }
    if f"triggered_to/{num_classes - 1}" in metrics:
        result["triggered_to"] = [metrics[f"triggered_to/{label}"] for label in range(num_classes)]
    return result


def strip_examples(
    test: ImageSet, attack: AttackSpec | None, triggered: TriggeredSet | None
) -> tuple[ImageSet, ImageSet | None]:
    """A few clean test images of distinct classes and their triggered versions (the same images
    stamped, when the attack spec is known; else the first of the stored triggered set)."""
    target = None if attack is None or attack.options["all_to_all"] else attack.options["target"]
    chosen: list[int] = []
    for label in range(test.num_classes):
        if label == target:
            continue
        found = np.flatnonzero(test.labels == label)
        if len(found):
            chosen.append(int(found[0]))
        if len(chosen) == STRIP_IMAGES:
            break
    clean = test.subset(np.array(chosen, dtype=np.int64))
    if attack is not None:
        return clean, ImageSet(attack.stamp(clean.images), clean.labels, clean.classes)
    if triggered is not None:
        first = np.arange(min(STRIP_IMAGES, len(triggered.images)))
        return clean, triggered.images.subset(first)
    return clean, None


def strip(
    models: dict[str, nn.Module], examples: tuple[ImageSet, ImageSet | None], context: RunContext
) -> dict[str, Any]:
    """The strip's images (base64 PNG) with their true labels and each model's predictions."""
    record: dict[str, Any] = {}
    for kind, images in zip(("clean", "triggered"), examples, strict=True):
        if images is None:
            continue
        scale = max(1, STRIP_PIXELS // max(images.size))
        predicted = {
            name: predict_logits(model, images.images, context.device).argmax(1).tolist()
            for name, model in models.items()
        }
        record[kind] = [
            {
                "label": int(label),
                "image": base64.b64encode(png_from_array(image, scale)).decode("ascii"),
                "predicted": {name: labels[index] for name, labels in predicted.items()},
            }
            for index, (image, label) in enumerate(zip(images.images, images.labels, strict=True))
        ]
    return record
