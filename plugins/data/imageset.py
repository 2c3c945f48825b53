"""The BackdoorBench-style data interface: images as uint8 NHWC RGB arrays, labels as ints."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageSet:
    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(
                f"images must be uint8 (N, H, W, 3), got {self.images.dtype} {self.images.shape}"
            )
        if len(self.images) != len(self.labels):
            raise ValueError("images and labels differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    def fingerprint(self) -> str:
        """A digest of the pixels and labels: identifies the data by content, not by path."""
        digest = hashlib.sha256(np.ascontiguousarray(self.images).data)
        digest.update(self.labels.astype(np.int64).tobytes())
        return digest.hexdigest()

    def subset(self, indices: np.ndarray) -> ImageSet:
        return ImageSet(self.images[indices], self.labels[indices], self.classes)


@dataclass(frozen=True)
class Splits:
    """A data set as users pass it: training images (the pool for clean subsets) and test images."""

    train: ImageSet | None
    test: ImageSet | None
