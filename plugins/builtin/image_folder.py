"""The ImageFolder layout, torchvision's and most data sets': `<root>/<class>/<image>` (class
folders sorted by name give the labels), or `train/` and `test/` folders of that layout. The host
asks it last, since more specific layouts are class folders of images too."""

from __future__ import annotations

from pathlib import Path

from purify_backdoor import (
    DataFormat,
    PurifyError,
    Splits,
    hookimpl,
    is_image_file,
    load_image_folder,
    refuse_special,
)

SPLITS = ("train", "test")


def detect(root: Path) -> bool:
    if not root.is_dir():
        return False
    if any((root / split).is_dir() for split in SPLITS):
        return True
    return any(_holds_images(entry) for entry in root.iterdir() if not entry.name.startswith("."))


def _holds_images(folder: Path) -> bool:
    return folder.is_dir() and any(is_image_file(path) for path in folder.iterdir())


def open_folder(root: Path, quiet: bool) -> Splits:
    """The splits; a `train` or `test` that is a link is refused, never followed (the class
    folders and images are checked as they are listed)."""
    train, test = (root / split for split in SPLITS)
    for split in (train, test):
        if split.is_symlink():
            refuse_special(split)
    if not (train.is_dir() or test.is_dir()):
        return Splits(train=load_image_folder(root, quiet), test=None)
    splits = Splits(
        train=load_image_folder(train, quiet) if train.is_dir() else None,
        test=load_image_folder(test, quiet) if test.is_dir() else None,
    )
    if splits.train and splits.test and splits.train.classes != splits.test.classes:
        raise PurifyError(f"{root}: train/ and test/ have different class folders")
    return splits


@hookimpl
def register_datasets(register):
    register(
        DataFormat(
            name="imagefolder",
            description="class folders of images (<root>/<class>/<image>), or train/ and test/ "
            "of them",
            detect=detect,
            open=open_folder,
        )
    )
