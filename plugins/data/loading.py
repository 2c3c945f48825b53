"""Open a data set from what users have on disk. Data formats are plugins (`register_datasets`):
this module holds what every format shares: the order they are asked in, archive extraction, the
cached ImageFolder decode and image decoding.

Decoded arrays are cached, so the 60,000 CIFAR-10 JPEGs are decoded once per machine."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pluggy
from PIL import Image

from purify_backdoor.atomic import atomic_write
from purify_backdoor.data.imageset import ImageSet, Splits
from purify_backdoor.errors import PurifyError
from purify_backdoor.manager import collect
from purify_backdoor.plugin_types import DataFormat
from purify_backdoor.untrusted_files import open_regular, refuse_special

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp", ".tif", ".tiff")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
# The catch-all: any folder holding folders of images reads as an ImageFolder, the layouts of more
# specific formats too (a TrojAI round folder's example_data/ would be one class). It is asked last.
GENERIC_FORMAT = "imagefolder"
# Pixels one image may declare in its header before it is decoded: far above CIFAR, GTSRB, TrojAI
# and ImageNet-size images, far below a decompression bomb's. Raised with the variable.
MAX_PIXELS_VARIABLE = "PURIFY_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 4096 * 4096


def cache_dir() -> Path:
    root = os.environ.get("PURIFY_CACHE") or Path.home() / ".cache" / "purify"
    return Path(root)


def open_data(
    path: str | Path, quiet: bool = True, manager: pluggy.PluginManager | None = None
) -> Splits:
    """The data at `path`, read by the first installed format that recognises it (archives are
    extracted first; see `data_formats` for the order)."""
    path = Path(path)
    if not path.exists():
        raise PurifyError(f"data path {path} does not exist; pass an ImageFolder, .tar.gz or .npz")
    root = _extract_once(path) if path.is_file() and _is_archive(path) else path
    formats = data_formats(manager)
    for candidate in _candidates(root):
        for data_format in formats:
            if _detects(data_format, candidate):
                return _open(data_format, candidate, quiet)
    raise PurifyError(_unrecognised(path, root, formats))


def data_formats(manager: pluggy.PluginManager | None = None) -> list[DataFormat]:
    """Every installed format, in the order they are asked: by name, so the outcome never depends
    on the order packages were installed in, and the generic ImageFolder last, so any format
    that knows a layout better wins over it."""
    formats = [entry.item for entry in collect("dataset", manager).values()]
    return sorted(formats, key=lambda f: (f.name == GENERIC_FORMAT, f.name))


def _is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _candidates(root: Path) -> list[Path]:
    """The path itself, then, for a folder holding nothing but one folder (as archives often wrap
    their data: cifar10-jpeg/train/...), that folder."""
    if not root.is_dir():
        return [root]
    entries = [entry for entry in root.iterdir() if not entry.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return [root, entries[0]]
    return [root]


def _detects(data_format: DataFormat, path: Path) -> bool:
    """Detection looks into untrusted files: a detector tripping over them means "not mine"."""
    try:
        return bool(data_format.detect(path))
    except PurifyError:
        raise
    except Exception:  # noqa: BLE001
        return False


def _open(data_format: DataFormat, path: Path, quiet: bool) -> Splits:
    """Data that passes detection but does not read is an input error, not a crash."""
    try:
        return data_format.open(path, quiet)
    except PurifyError:
        raise
    except Exception as error:  # noqa: BLE001
        detail = " ".join(str(error).split())[:160]
        raise PurifyError(
            f"{path} looks like '{data_format.name}' data but does not read "
            f"({type(error).__name__}: {detail}); check the files"
        ) from None


def _unrecognised(path: Path, root: Path, formats: list[DataFormat]) -> str:
    names = ", ".join(data_format.name for data_format in formats) or "none"
    layout = "has no class folders of images and " if root.is_dir() else ""
    return (
        f"cannot read data {path}: it {layout}is in none of the installed data formats "
        f"({names}); pass an ImageFolder (<root>/<class>/<image>, or train/ and test/ of them), "
        f"a .tar.gz of one, or another format `purify plugins` lists, or install the plugin "
        f"that reads yours"
    )


def is_image_file(path: Path) -> bool:
    """A file PIL decodes, told by its suffix (.png, .jpg, .jpeg, .bmp, .ppm, .webp, .tif)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def _image_files(root: Path) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """The class folders and their image files. A link among the class folders, or a link or
    special file named like an image, is refused: it could lead out of the data set or never
    end (/dev/zero, a fifo)."""
    for entry in root.iterdir():
        if entry.is_symlink():
            refuse_special(entry)
    classes = tuple(sorted(d.name for d in root.iterdir() if d.is_dir()))
    if not classes:
        raise PurifyError(f"{root} has no class folders; expected <root>/<class>/<image> files")
    files = [
        (path, label)
        for label, name in enumerate(classes)
        for path in sorted((root / name).iterdir())
        if _regular_image(path)
    ]
    if not files:
        raise PurifyError(f"{root} has class folders but no images ({', '.join(IMAGE_SUFFIXES)})")
    return classes, files


def _regular_image(path: Path) -> bool:
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return False
    refuse_special(path)
    return path.is_file()


def load_image_folder(root: Path, quiet: bool = True) -> ImageSet:
    """A `<root>/<class>/<image>` tree as one ImageSet (class folders sorted by name give the
    labels), through the decode cache: a data set is decoded once per machine, not once per run."""
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
    """Image files -> one uint8 (N, H, W, 3) RGB array. Each header is checked before its image
    is decoded: a size over `max_image_pixels`, or another size or mode than the first image's,
    is a clear error naming the file, before any memory goes to it."""
    from tqdm import tqdm

    limit = max_image_pixels()
    first, first_mode = _read_rgb(paths[0], limit)
    images = np.empty((len(paths), *first.shape), dtype=np.uint8)
    for index, path in enumerate(
        tqdm(paths, desc="decoding images", disable=quiet, leave=False, unit="img")
    ):
        images[index] = _read_rgb(path, limit, like=(first.shape[1::-1], first_mode))[0]
    return images


def max_image_pixels() -> int:
    """The most pixels one image may declare: PURIFY_MAX_IMAGE_PIXELS, or 4096 x 4096."""
    value = os.environ.get(MAX_PIXELS_VARIABLE, "").strip()
    if not value:
        return DEFAULT_MAX_PIXELS
    if not value.isdigit() or int(value) == 0:
        raise PurifyError(
            f"{MAX_PIXELS_VARIABLE}={value!r} is not a positive whole number; set it to the most "
            f"pixels one image may have (default {DEFAULT_MAX_PIXELS})"
        )
    return int(value)


def _read_rgb(
    path: Path, limit: int, like: tuple[tuple[int, int], str] | None = None
) -> tuple[np.ndarray, str]:
    """The image as RGB, and the mode it was stored in (a grey image among colour ones is an
    error, not something to convert silently). `Image.open` reads the header only, so the size
    it declares is checked against `limit` and `like` (the first image's (width, height) and
    mode) before any pixel is decoded; PIL's own bomb check (at twice its limit) is one line
    too. The file is opened as a regular file only, never through a link."""
    try:
        with open_regular(path) as handle, _open_header(path, handle) as image:
            _check_header(path, image, limit, like)
            return np.asarray(image.convert("RGB"), dtype=np.uint8), image.mode
    except OSError as error:
        raise PurifyError(f"cannot decode image {path}: {error}; remove or replace it") from None


def _open_header(path: Path, handle: BinaryIO) -> Image.Image:
    """`Image.open` without PIL's bomb warning (purify's own limit decides) and with its bomb
    error as one line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(handle)
    except Image.DecompressionBombError as error:
        detail = " ".join(str(error).split())
        raise PurifyError(
            f"{path} declares an image too large to decode ({detail}); it is no data set image "
            f"(a decompression bomb?): remove it or replace it with the real image"
        ) from None


def _check_header(
    path: Path, image: Image.Image, limit: int, like: tuple[tuple[int, int], str] | None
) -> None:
    width, height = image.size
    if width * height > limit:
        raise PurifyError(
            f"{path} is {width}x{height} ({width * height / 1e6:.1f} megapixels), more than the "
            f"{limit / 1e6:.1f} megapixels purify decodes per image (a decompression bomb?); "
            f"resize the data set's images, or raise the limit with {MAX_PIXELS_VARIABLE}=N "
            f"if they really are this large"
        )
    if like is None:
        return
    (first_width, first_height), first_mode = like
    if image.mode != first_mode:
        raise PurifyError(
            f"{path} is a {image.mode} image, but the data set's images are {first_mode}; "
            f"convert the data set to one mode (RGB)"
        )
    if (width, height) != (first_width, first_height):
        raise PurifyError(
            f"{path} is {width}x{height}, but the data set's images are "
            f"{first_width}x{first_height}; resize the data set to one size"
        )


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
