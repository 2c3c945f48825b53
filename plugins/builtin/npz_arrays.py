"""BackdoorBench-style numpy arrays in one `.npz`: `x` (uint8 NHWC) and `y` are the training
images; `x_test` and `y_test`, when present, the test split; `classes` (strings), when present,
names the labels. Read without pickle, so the file runs no code."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from purify_backdoor import DataFormat, ImageSet, PurifyError, Splits, hookimpl

ZIP_MAGIC = b"PK\x03\x04"  # an .npz is a zip of .npy files


def detect(path: Path) -> bool:
    if not (path.is_file() and path.suffix.lower() == ".npz"):
        return False
    with path.open("rb") as handle:
        return handle.read(len(ZIP_MAGIC)) == ZIP_MAGIC


def load_npz(path: Path, quiet: bool = True) -> Splits:
    with np.load(path, allow_pickle=False) as archive:
        if "x" not in archive or "y" not in archive:
            raise PurifyError(f"{path} must contain arrays 'x' (uint8 NHWC) and 'y' (int labels)")
        if ("x_test" in archive) != ("y_test" in archive):
            raise PurifyError(f"{path}: 'x_test' and 'y_test' go together; store both or neither")
        names = tuple(str(name) for name in archive["classes"]) if "classes" in archive else None
        train = _split(path, archive["x"], archive["y"], "x", names)
        test = None
        if "x_test" in archive:
            test = _split(path, archive["x_test"], archive["y_test"], "x_test", names)
    if names is None and test is not None:
        count = max(train.num_classes, test.num_classes)
        train, test = (ImageSet(s.images, s.labels, _numbered(count)) for s in (train, test))
    return Splits(train=train, test=test)


def _numbered(count: int) -> tuple[str, ...]:
    return tuple(str(k) for k in range(count))


def _split(
    path: Path, images: np.ndarray, labels: np.ndarray, key: str, names: tuple[str, ...] | None
) -> ImageSet:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise PurifyError(
            f"{path}: '{key}' must be uint8 of shape (N, H, W, 3), "
            f"got {images.dtype} {images.shape}"
        )
    labels = labels.astype(np.int64)
    classes = names or _numbered(int(labels.max()) + 1)
    if labels.min() < 0 or labels.max() >= len(classes):
        raise PurifyError(f"{path}: labels of '{key}' must lie in 0..{len(classes) - 1}")
    return ImageSet(images, labels, classes)


@hookimpl
def register_datasets(register):
    register(
        DataFormat(
            name="npz",
            description=".npz with x (uint8 NHWC) and y, optionally x_test/y_test and classes",
            detect=detect,
            open=load_npz,
        )
    )
