"""BackdoorBench-style numpy arrays in one `.npz`: `x` (uint8 NHWC) and `y` are the training
images; `x_test` and `y_test`, when present, the test split; `classes` (strings), when present,
names the labels. Read without pickle, so the file runs no code. Every way such a file can be
wrong (empty, cut short, object arrays, lengths or labels that do not match) is a one-line error
naming the array and the fix, never numpy's own exception."""

from __future__ import annotations

import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np

from purify_backdoor import DataFormat, ImageSet, PurifyError, Splits, hookimpl

ZIP_MAGIC = b"PK\x03\x04"  # an .npz is a zip of .npy files
ARRAYS = ("x", "y", "x_test", "y_test", "classes")
DAMAGED = (zipfile.BadZipFile, EOFError, OSError, zlib.error)


def detect(path: Path) -> bool:
    """An .npz by suffix and zip magic; an empty .npz too, so that its reader says it is empty
    rather than no format claiming it."""
    if not (path.is_file() and path.suffix.lower() == ".npz"):
        return False
    with path.open("rb") as handle:
        start = handle.read(len(ZIP_MAGIC))
    return start in (ZIP_MAGIC, b"")


def load_npz(path: Path, quiet: bool = True) -> Splits:
    arrays = _read_arrays(path)
    if "x" not in arrays or "y" not in arrays:
        raise PurifyError(f"{path} must contain arrays 'x' (uint8 NHWC) and 'y' (int labels)")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise PurifyError(f"{path}: 'x_test' and 'y_test' go together; store both or neither")
    names = tuple(str(name) for name in arrays["classes"]) if "classes" in arrays else None
    train = _split(path, arrays["x"], arrays["y"], "x", names)
    test = None
    if "x_test" in arrays:
        test = _split(path, arrays["x_test"], arrays["y_test"], "x_test", names)
    if names is None and test is not None:
        count = max(train.num_classes, test.num_classes)
        train, test = (ImageSet(s.images, s.labels, _numbered(count)) for s in (train, test))
    if not quiet:
        _warn_if_one_class(path, train)
    return Splits(train=train, test=test)


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays purify reads, each loaded in full here, so a damaged member or an object array
    is named as such instead of surfacing as numpy's error later."""
    if path.stat().st_size == 0:
        raise PurifyError(f"{path} is empty (0 bytes); copy or write the .npz again")
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            for key in (key for key in ARRAYS if key in archive.files):
                try:
                    arrays[key] = archive[key]
                except ValueError as error:
                    if "allow_pickle" not in str(error):
                        raise
                    raise PurifyError(
                        f"{path}: array '{key}' holds Python objects, which only unpickling (that "
                        f"can run code) would read; store it as a plain numeric or string array"
                    ) from None
    except PurifyError:
        raise
    except (*DAMAGED, ValueError) as error:
        detail = " ".join(str(error).split())[:120]
        raise PurifyError(
            f"{path} is not a readable .npz: the file is truncated or damaged "
            f"({type(error).__name__}: {detail}); copy or write it again"
        ) from None
    return arrays


def _numbered(count: int) -> tuple[str, ...]:
    return tuple(str(k) for k in range(count))


def _split(
    path: Path, images: np.ndarray, labels: np.ndarray, key: str, names: tuple[str, ...] | None
) -> ImageSet:
    label_key = "y" if key == "x" else "y_test"
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise PurifyError(
            f"{path}: '{key}' must be uint8 of shape (N, H, W, 3), "
            f"got {images.dtype} {images.shape}"
        )
    if len(images) == 0:
        raise PurifyError(f"{path}: '{key}' holds no images; store at least one per class")
    if labels.ndim != 1 or len(labels) != len(images):
        raise PurifyError(
            f"{path}: '{key}' has {len(images)} images but '{label_key}' has shape "
            f"{labels.shape}; store one integer label per image"
        )
    labels = _integer_labels(path, labels, label_key)
    classes = names or _numbered(int(labels.max()) + 1)
    if labels.min() < 0 or labels.max() >= len(classes):
        raise PurifyError(f"{path}: labels of '{key}' must lie in 0..{len(classes) - 1}")
    return ImageSet(images, labels, classes)


def _integer_labels(path: Path, labels: np.ndarray, key: str) -> np.ndarray:
    """Class indices as int64. Float labels are taken only when every one is a whole number:
    casting 2.7 to class 2 would train and measure on labels nobody gave."""
    if labels.dtype.kind in "iub":
        return labels.astype(np.int64)
    if labels.dtype.kind == "f":
        whole = np.isfinite(labels) & (labels == np.round(labels))
        if whole.all():
            return labels.astype(np.int64)
        bad = labels[~whole][0]
        raise PurifyError(
            f"{path}: '{key}' holds {labels.dtype} labels that are not class indices (e.g. "
            f"{bad}); store integer labels (0..K-1)"
        )
    raise PurifyError(
        f"{path}: '{key}' must hold integer class indices, got {labels.dtype}; store integer "
        f"labels (0..K-1)"
    )


def _warn_if_one_class(path: Path, train: ImageSet) -> None:
    """Training images of one class under several class names cannot teach the others: a defense
    fine-tuned on them pulls the model onto that class. A warning, not an error: a set labelled
    by the model itself (an untrained one answers one class) is a legitimate probe."""
    present = np.unique(train.labels)
    if len(present) == 1 and train.num_classes > 1:
        print(
            f"Warning: {path}: every training image ('y') is class {present[0]} of "
            f"{train.num_classes} classes, so a defense learns only that one; store clean images "
            f"of every class",
            file=sys.stderr,
        )


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
