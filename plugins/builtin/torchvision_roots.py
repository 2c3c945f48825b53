"""Data sets as torchvision downloads them: a CIFAR-10 root (`cifar-10-batches-py/`) and a GTSRB
root (`gtsrb/GTSRB/Training/`, `gtsrb/GTSRB/Final_Test/Images/` with `gtsrb/GT-final_test.csv`).
torchvision itself reads them, so they open exactly as torchvision users see them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from purify_backdoor import DataFormat, ImageSet, PurifyError, Splits, hookimpl

CIFAR10_BATCHES = "cifar-10-batches-py"
GTSRB_SIZE = (32, 32)  # BackdoorBench's size for GTSRB, whose images vary in size
GTSRB_CLASSES = 43


def detect_cifar10(root: Path) -> bool:
    return (root / CIFAR10_BATCHES / "batches.meta").is_file()


CIFAR10_FILES = ("batches.meta", *(f"data_batch_{k}" for k in range(1, 6)), "test_batch")


def open_cifar10(root: Path, quiet: bool) -> Splits:
    """torchvision unpickles the batches: the user's own download, as with torchvision itself.
    A partial root (an interrupted download) is named file by file before torchvision, whose own
    message advises downloading, which purify never does."""
    from torchvision.datasets import CIFAR10

    missing = [name for name in CIFAR10_FILES if not (root / CIFAR10_BATCHES / name).is_file()]
    if missing:
        raise PurifyError(
            f"{root / CIFAR10_BATCHES} is an incomplete CIFAR-10 download: {', '.join(missing)} "
            f"missing; download the data set again (torchvision's CIFAR10(root, download=True) "
            f"or the python version from its site) and pass its folder"
        )

    def split(train: bool) -> ImageSet:
        data = CIFAR10(root, train=train, download=False)
        return ImageSet(data.data, np.array(data.targets, dtype=np.int64), tuple(data.classes))

    return Splits(train=split(True), test=split(False))


def detect_gtsrb(root: Path) -> bool:
    return (root / "gtsrb" / "GTSRB" / "Training").is_dir()


def open_gtsrb(root: Path, quiet: bool) -> Splits:
    """Both splits, resized to 32 x 32; the test split only when its images and labels are there."""
    from torchvision.datasets import GTSRB
    from tqdm import tqdm

    def split(name: str) -> ImageSet:
        data = GTSRB(root, split=name, download=False)
        images = np.empty((len(data), *GTSRB_SIZE, 3), dtype=np.uint8)
        labels = np.empty(len(data), dtype=np.int64)
        for index in tqdm(range(len(data)), desc=f"GTSRB {name}", disable=quiet, leave=False):
            image, label = data[index]
            images[index] = np.asarray(image.convert("RGB").resize(GTSRB_SIZE, Image.BILINEAR))
            labels[index] = label
        return ImageSet(images, labels, tuple(str(k) for k in range(GTSRB_CLASSES)))

    folder = root / "gtsrb"
    has_test = (folder / "GTSRB" / "Final_Test" / "Images").is_dir() and (
        folder / "GT-final_test.csv"
    ).is_file()
    return Splits(train=split("train"), test=split("test") if has_test else None)


@hookimpl
def register_datasets(register):
    register(
        DataFormat(
            name="cifar10",
            description="torchvision CIFAR-10 root (cifar-10-batches-py/)",
            detect=detect_cifar10,
            open=open_cifar10,
        )
    )
    register(
        DataFormat(
            name="gtsrb",
            description="torchvision GTSRB root (gtsrb/GTSRB/), resized to 32x32",
            detect=detect_gtsrb,
            open=open_gtsrb,
        )
    )
