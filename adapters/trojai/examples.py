"""The clean example images a TrojAI model folder ships, as a data set (`--data` pointing at the
model folder, or at its example folder): rounds 1-4's `class_<k>_example_<n>.png` in
`clean_example_data/` or `example_data/`; round 11's `clean-example-data/<id>.jpg` (or .png)
beside `<id>.json`, which holds the label (a bare integer); the mitigation round's
`new-clean-example-data/` with `{"clean_label": k}`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from purify_backdoor import (
    DataFormat,
    ImageSet,
    PurifyError,
    Splits,
    decode_images,
    refuse_specials_in,
)

EXAMPLE = re.compile(r"class_(\d+)_example_(\d+)\.(png|jpg|jpeg)$", re.IGNORECASE)
LABELLED_FOLDERS = ("clean-example-data", "new-clean-example-data")
NAMED_FOLDERS = ("clean_example_data", "example_data")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def examples_folder(folder: Path) -> Path | None:
    """The folder of example images: `folder` itself, or the round's clean example folder."""
    for name in LABELLED_FOLDERS:
        if _labelled_examples(folder / name):
            return folder / name
    if _labelled_examples(folder):
        return folder
    for candidate in (*(folder / name for name in NAMED_FOLDERS), folder):
        if candidate.is_dir() and any(EXAMPLE.match(path.name) for path in candidate.iterdir()):
            return candidate
    return None


def _labelled_examples(folder: Path) -> list[tuple[Path, Path]]:
    if not folder.is_dir():
        return []
    images = (p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES)
    return [
        (image, image.with_suffix(".json"))
        for image in images
        if image.with_suffix(".json").is_file()
    ]


def detect(path: Path) -> bool:
    return path.is_dir() and examples_folder(path) is not None


def open_examples(path: Path, quiet: bool) -> Splits:
    return Splits(train=load_examples(examples_folder(path)), test=None)


def load_examples(folder: Path) -> ImageSet:
    """The folder's example images and labels; a link or special file in it is refused before
    any label file or image is read."""
    refuse_specials_in(folder)
    if labelled := _labelled_examples(folder):
        paths = [image for image, _ in labelled]
        labels = [_example_label(label_file) for _, label_file in labelled]
    else:
        files = sorted(
            (int(match.group(1)), int(match.group(2)), path)
            for path in folder.iterdir()
            if (match := EXAMPLE.match(path.name))
        )
        paths = [path for _, _, path in files]
        labels = [label for label, _, _ in files]
    array = np.array(labels, dtype=np.int64)
    classes = tuple(str(k) for k in range(int(array.max()) + 1))
    return ImageSet(decode_images(paths), array, classes)


def _example_label(path: Path) -> int:
    try:
        value = json.loads(path.read_text())
        return int(value["clean_label"] if isinstance(value, dict) else value)
    except (ValueError, KeyError, TypeError):
        raise PurifyError(
            f"{path} should hold the image's class label (an integer); check the TrojAI folder"
        ) from None


EXAMPLE_IMAGES = DataFormat(
    name="trojai_examples",
    description="TrojAI model folder's clean example images (rounds 1-4, 11, mitigation)",
    detect=detect,
    open=open_examples,
)
