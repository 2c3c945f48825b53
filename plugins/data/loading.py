"""Open a data set from what users have on disk: an ImageFolder tree (with `train/` and `test/`, or
just class folders), a `.tar.gz` of one, an `.npz` with `x` (uint8 NHWC) and `y`, a torchvision
CIFAR-10 or GTSRB root, or a TrojAI folder of `class_<k>_example_<n>.png` images.

Decoded arrays are cached, so the 60,000 CIFAR-10 JPEGs are decoded once per machine."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from purify_backdoor.atomic import atomic_write
from purify_backdoor.data.imageset import ImageSet, Splits
from purify_backdoor.errors import PurifyError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp", ".tif", ".tiff"}
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def cache_dir() -> Path:
    root = os.environ.get("PURIFY_CACHE") or Path.home() / ".cache" / "purify"
    return Path(root)


def open_data(path: str | Path, quiet: bool = True) -> Splits:
    path = Path(path)
    if not path.exists():
        raise PurifyError(f"data path {path} does not exist; pass an ImageFolder, .tar.gz or .npz")
    if path.is_file() and path.name.endswith(ARCHIVE_SUFFIXES):
        return _open_folder(_extract_once(path), quiet)
    if path.is_file() and path.suffix == ".npz":
        return load_npz(path)
    if path.is_dir():
        if (path / "cifar-10-batches-py").is_dir():
            return _torchvision_cifar10(path)
        if (path / "gtsrb").is_dir():
            return _torchvision_gtsrb(path, quiet)
        examples = _trojai_examples(path)
        if examples is not None:
            return Splits(train=load_trojai_examples(examples), test=None)
        return _open_folder(path, quiet)
    raise PurifyError(
        f"cannot read data {path}: expected an ImageFolder directory, a .tar.gz of one, or an .npz"
    )


def load_npz(path: Path) -> Splits:
    """`x` (uint8 NHWC) and `y` are the training images; `x_test` and `y_test`, when present, the
    test split; `classes` (strings), when present, names the labels."""
    with np.load(path, allow_pickle=False) as archive:
        if "x" not in archive or "y" not in archive:
            raise PurifyError(f"{path} must contain arrays 'x' (uint8 NHWC) and 'y' (int labels)")
        if ("x_test" in archive) != ("y_test" in archive):
            raise PurifyError(f"{path}: 'x_test' and 'y_test' go together; store both or neither")
        names = tuple(str(name) for name in archive["classes"]) if "classes" in archive else None
        train = _npz_split(path, archive["x"], archive["y"], "x", names)
        test = None
        if "x_test" in archive:
            test = _npz_split(path, archive["x_test"], archive["y_test"], "x_test", names)
    if names is None and test is not None:
        count = max(train.num_classes, test.num_classes)
        train, test = (ImageSet(s.images, s.labels, _numbered(count)) for s in (train, test))
    return Splits(train=train, test=test)


def _numbered(count: int) -> tuple[str, ...]:
    return tuple(str(k) for k in range(count))


def _npz_split(
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


def _torchvision_cifar10(root: Path) -> Splits:
    """A torchvision CIFAR-10 root; torchvision reads its pickled batches (the user's own data)."""
    from torchvision.datasets import CIFAR10

    def split(train: bool) -> ImageSet:
        data = CIFAR10(root, train=train, download=False)
        return ImageSet(data.data, np.array(data.targets, dtype=np.int64), tuple(data.classes))

    return Splits(train=split(True), test=split(False))


GTSRB_SIZE = (32, 32)  # BackdoorBench's size for GTSRB, whose images vary in size


def _torchvision_gtsrb(root: Path, quiet: bool) -> Splits:
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
        return ImageSet(images, labels, tuple(str(k) for k in range(43)))

    return Splits(train=split("train"), test=split("test"))


TROJAI_EXAMPLE = re.compile(r"class_(\d+)_example_(\d+)\.(png|jpg|jpeg)$", re.IGNORECASE)
# Round 11 and the mitigation round: `<id>.jpg` (or .png) beside `<id>.json`, which holds the
# label (a bare integer; `{"clean_label": k}` in the mitigation round's new-clean-example-data).
TROJAI_LABELLED = ("clean-example-data", "new-clean-example-data")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _trojai_examples(folder: Path) -> Path | None:
    """The folder of TrojAI example images: `folder` itself, or its clean example folder."""
    for name in TROJAI_LABELLED:
        if _labelled_examples(folder / name):
            return folder / name
    if _labelled_examples(folder):
        return folder
    for candidate in (folder / "clean_example_data", folder / "example_data", folder):
        if candidate.is_dir() and any(TROJAI_EXAMPLE.match(p.name) for p in candidate.iterdir()):
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


def load_trojai_examples(folder: Path) -> ImageSet:
    if labelled := _labelled_examples(folder):
        labels = [_example_label(label_file) for _, label_file in labelled]
        images = decode_images([image for image, _ in labelled])
        array = np.array(labels, dtype=np.int64)
        return ImageSet(images, array, tuple(str(k) for k in range(int(array.max()) + 1)))
    files = sorted(
        (int(match.group(1)), int(match.group(2)), path)
        for path in folder.iterdir()
        if (match := TROJAI_EXAMPLE.match(path.name))
    )
    images = decode_images([path for _, _, path in files])
    labels = np.array([label for label, _, _ in files], dtype=np.int64)
    return ImageSet(images, labels, tuple(str(k) for k in range(int(labels.max()) + 1)))


def _example_label(path: Path) -> int:
    try:
        value = json.loads(path.read_text())
        return int(value["clean_label"] if isinstance(value, dict) else value)
    except (ValueError, KeyError, TypeError):
        raise PurifyError(
            f"{path} should hold the image's class label (an integer); check the TrojAI folder"
        ) from None


def _open_folder(root: Path, quiet: bool) -> Splits:
    root = _single_child(root)
    if (root / "train").is_dir() or (root / "test").is_dir():
        train = load_image_folder(root / "train", quiet) if (root / "train").is_dir() else None
        test = load_image_folder(root / "test", quiet) if (root / "test").is_dir() else None
        if train is not None and test is not None and train.classes != test.classes:
            raise PurifyError(f"{root}: train/ and test/ have different class folders")
        return Splits(train=train, test=test)
    return Splits(train=load_image_folder(root, quiet), test=None)


def _single_child(root: Path) -> Path:
    """Archives often wrap the data set in one top folder (cifar10-jpeg/train/...)."""
    entries = [entry for entry in root.iterdir() if not entry.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and not _has_images(root):
        inner = entries[0]
        if (inner / "train").is_dir() or (inner / "test").is_dir():
            return inner
    return root


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir() if p.is_file())


def _image_files(root: Path) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    classes = tuple(sorted(d.name for d in root.iterdir() if d.is_dir()))
    if not classes:
        raise PurifyError(f"{root} has no class folders; expected <root>/<class>/<image> files")
    files = [
        (path, label)
        for label, name in enumerate(classes)
        for path in sorted((root / name).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise PurifyError(f"{root} has class folders but no images ({', '.join(IMAGE_SUFFIXES)})")
    return classes, files


def load_image_folder(root: Path, quiet: bool = True) -> ImageSet:
    """Decode an ImageFolder tree into one array, through the decode cache."""
    classes, files = _image_files(root)
    key = hashlib.sha256()
    for path, label in files:
        stat = path.stat()
        key.update(f"{path}|{label}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    cached = cache_dir() / "decoded" / f"{key.hexdigest()[:32]}.npz"
    if cached.exists():
        with np.load(cached, allow_pickle=False) as archive:
            return ImageSet(archive["x"], archive["y"], classes)
    images = decode_images([path for path, _ in files], quiet)
    labels = np.array([label for _, label in files], dtype=np.int64)
    cached.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(cached, lambda tmp: np.savez(tmp, x=images, y=labels), suffix=".npz")
    return ImageSet(images, labels, classes)


def decode_images(paths: list[Path], quiet: bool = True) -> np.ndarray:
    """Image files -> one uint8 (N, H, W, 3) RGB array; a file of another size is a clear error."""
    from tqdm import tqdm

    first, first_mode = _read_rgb(paths[0])
    images = np.empty((len(paths), *first.shape), dtype=np.uint8)
    for index, path in enumerate(
        tqdm(paths, desc="decoding images", disable=quiet, leave=False, unit="img")
    ):
        image, mode = _read_rgb(path)
        if mode != first_mode:
            raise PurifyError(
                f"{path} is a {mode} image, but the data set's images are {first_mode}; "
                f"convert the data set to one mode (RGB)"
            )
        if image.shape != first.shape:
            raise PurifyError(
                f"{path} is {image.shape[1]}x{image.shape[0]}, but the data set's images are "
                f"{first.shape[1]}x{first.shape[0]}; resize the data set to one size"
            )
        images[index] = image
    return images


def _read_rgb(path: Path) -> tuple[np.ndarray, str]:
    """The image as RGB, and the mode it was stored in (a grey image among colour ones is an
    error, not something to convert silently)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8), image.mode
    except OSError as error:
        raise PurifyError(f"cannot decode image {path}: {error}; remove or replace it") from None


def _extract_once(archive: Path) -> Path:
    """Extract into the cache (once per archive content), refusing absolute paths, `..` and links
    that leave the target (tarfile's "data" filter)."""
    digest = hashlib.sha256()
    with archive.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    target = cache_dir() / "extracted" / digest.hexdigest()[:32]
    if (target / ".complete").exists():
        return target
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    partial.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(partial, filter="data")
    except (tarfile.TarError, OSError) as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise PurifyError(
            f"cannot extract {archive}: {error}; check that the archive is whole"
        ) from None
    (partial / ".complete").touch()
    if (target / ".complete").exists():  # another process finished first and may be reading it
        shutil.rmtree(partial, ignore_errors=True)
        return target
    shutil.rmtree(target, ignore_errors=True)
    try:
        partial.rename(target)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        if not (target / ".complete").exists():
            raise
    return target
