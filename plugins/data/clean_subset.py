"""The clean data a defender holds: a seeded, class-stratified subset of the training images."""

from __future__ import annotations

import numpy as np

from purify_backdoor.data.imageset import ImageSet
from purify_backdoor.errors import PurifyError


def clean_subset_indices(
    labels: np.ndarray, seed: int, ratio: float | None = None, count: int | None = None
) -> np.ndarray:
    """Indices of `ratio * N` (or `count`) images, split across classes in proportion to their size,
    so every class is represented even in a 1% subset."""
    total = len(labels)
    if count is None:
        if ratio is None or not 0 < ratio <= 1:
            raise PurifyError(f"--ratio must be in (0, 1], got {ratio}; for example --ratio 0.05")
        count = max(1, round(ratio * total))
    classes, sizes = np.unique(labels, return_counts=True)
    if not len(classes) <= count <= total:
        raise PurifyError(
            f"clean subset of {count} images is impossible with {total} images in "
            f"{len(classes)} classes; choose --n-clean between {len(classes)} and {total}"
        )
    quota = _proportional_quota(sizes, count)
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(labels == cls), size=take, replace=False)
        for cls, take in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(chosen))


def _proportional_quota(sizes: np.ndarray, count: int) -> np.ndarray:
    """Largest-remainder apportionment with at least one image per class."""
    exact = sizes / sizes.sum() * count
    quota = np.maximum(np.floor(exact).astype(int), 1)
    quota = np.minimum(quota, sizes)
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    while quota.sum() < count:
        for cls in order:
            if quota.sum() == count:
                break
            if quota[cls] < sizes[cls]:
                quota[cls] += 1
    while quota.sum() > count:
        cls = int(np.argmax(quota))
        quota[cls] -= 1
    return quota


def clean_subset(
    data: ImageSet, seed: int, ratio: float | None = None, count: int | None = None
) -> tuple[ImageSet, np.ndarray]:
    indices = clean_subset_indices(data.labels, seed, ratio=ratio, count=count)
    return data.subset(indices), indices
