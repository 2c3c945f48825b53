import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import types
import zlib
from pathlib import Path

import numpy as np
import pluggy
import pytest
import torch
from PIL import Image

from purify_backdoor import DataFormat, ImageSet, Splits, hookimpl
from purify_backdoor.builtin import image_folder
from purify_backdoor.data import loading
from purify_backdoor.data.loading import open_data
from purify_backdoor.errors import PurifyError
from purify_backdoor.manager import new_manager
from tests.conftest import tiny_wideresnet
from tests.plugins.test_cli import assert_one_line_error, invoke


def test_image_folder_with_splits(tiny_data):
    splits = open_data(tiny_data)
    assert len(splits.train) == 200 and len(splits.test) == 100
    assert splits.train.images.shape == (200, 16, 16, 3) and splits.train.images.dtype == np.uint8
    assert splits.train.classes[0] == "cool-bar" and splits.train.num_classes == 10
    again = open_data(tiny_data)  # from the decode cache
    assert np.array_equal(again.train.images, splits.train.images)


def test_archive_with_top_folder(tiny_data, tmp_path):
    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tiny_data, arcname="tiny")
    splits = open_data(archive)
    assert np.array_equal(splits.test.images, open_data(tiny_data).test.images)


def test_concurrent_extraction_keeps_the_first_copy(tiny_data, tmp_path, monkeypatch):
    """Two processes extracting one archive: the one finishing second must not delete the copy
    the first is already reading (it did, and a parallel `purify attack` lost its images)."""
    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tiny_data, arcname="tiny")
    target = loading._extract_once(archive)
    marker = target / "tiny" / "in-use"
    marker.touch()
    original = tarfile.TarFile.extractall

    def extract_while_other_finished(self, path, **kwargs):
        original(self, path, **kwargs)
        (target / ".complete").touch()

    monkeypatch.setattr(tarfile.TarFile, "extractall", extract_while_other_finished)
    (target / ".complete").unlink()  # this process sees no finished copy when it starts
    assert loading._extract_once(archive) == target
    assert marker.exists()
    assert not list(target.parent.glob("*.partial-*"))


def test_archive_escaping_its_folder_is_refused(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        payload = b"owned"
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(PurifyError, match="cannot extract"):
        open_data(archive)
    assert not (tmp_path / "escaped.txt").exists()


def test_npz(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((6, 8, 8, 3), np.uint8), y=np.array([0, 1, 2, 0, 1, 2]))
    data = open_data(path).train
    assert len(data) == 6 and data.num_classes == 3
    np.savez(path, x=np.zeros((6, 8, 8), np.float32), y=np.zeros(6))
    with pytest.raises(PurifyError, match="uint8 of shape"):
        open_data(path)


def test_npz_with_a_test_split_and_class_names(tmp_path):
    path = tmp_path / "d.npz"
    images = np.arange(6 * 4 * 4 * 3, dtype=np.uint8).reshape(6, 4, 4, 3)
    classes = np.array(["cat", "dog", "emu"])
    np.savez(
        path, x=images, y=[0, 1, 2, 0, 1, 2], x_test=images[:2], y_test=[2, 2], classes=classes
    )
    splits = open_data(path)
    assert len(splits.train) == 6 and np.array_equal(splits.test.images, images[:2])
    assert splits.train.classes == splits.test.classes == ("cat", "dog", "emu")
    np.savez(path, x=images, y=[0, 1, 2, 0, 1, 2], x_test=images[:2], y_test=[0, 1])
    unnamed = open_data(path)
    assert unnamed.train.classes == unnamed.test.classes == ("0", "1", "2")
    np.savez(path, x=images, y=[0, 1, 2, 0, 1, 2], x_test=images[:2])
    with pytest.raises(PurifyError, match="go together"):
        open_data(path)
    np.savez(path, x=images, y=[0, 1, 5, 0, 1, 2], classes=classes)
    with pytest.raises(PurifyError, match=r"must lie in 0\.\.2"):
        open_data(path)


def test_mixed_image_sizes_name_the_file(tmp_path):
    for name, size in (("a.png", 8), ("b.png", 9)):
        (tmp_path / "cls").mkdir(exist_ok=True)
        Image.new("RGB", (size, size)).save(tmp_path / "cls" / name)
    with pytest.raises(PurifyError, match="b.png is 9x9"):
        open_data(tmp_path)


@pytest.mark.parametrize("setup", ["missing", "empty", "no_images"])
def test_bad_folders(tmp_path, setup):
    root = tmp_path / "data"
    if setup != "missing":
        root.mkdir()
    if setup == "no_images":
        (root / "cls").mkdir()
    with pytest.raises(PurifyError):
        open_data(root)


def test_torchvision_gtsrb_root_is_resized_to_32(tmp_path):
    training = tmp_path / "gtsrb" / "GTSRB" / "Training"
    for label, size in ((0, 40), (1, 50)):
        (training / f"{label:05d}").mkdir(parents=True)
        Image.new("RGB", (size, size), (label * 50, 0, 0)).save(training / f"{label:05d}" / "a.ppm")
    test_images = tmp_path / "gtsrb" / "GTSRB" / "Final_Test" / "Images"
    test_images.mkdir(parents=True)
    Image.new("RGB", (35, 35)).save(test_images / "00000.ppm")
    (tmp_path / "gtsrb" / "GT-final_test.csv").write_text(
        "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n00000.ppm;35;35;0;0;35;35;2\n"
    )
    splits = open_data(tmp_path)
    assert splits.train.images.shape == (2, 32, 32, 3) and splits.train.num_classes == 43
    assert splits.train.labels.tolist() == [0, 1] and splits.test.labels.tolist() == [2]


def _format_plugin(module_name: str, *formats: DataFormat) -> types.ModuleType:
    """A third-party package's plugin module, registering `formats`."""
    module = types.ModuleType(module_name)

    @hookimpl
    def register_datasets(register):
        for data_format in formats:
            register(data_format)

    module.register_datasets = register_datasets
    return module


def _marked_folder(path: Path) -> bool:
    return (path / "MARK").is_file()


def _one_image(path: Path, quiet: bool) -> Splits:
    return Splits(ImageSet(np.zeros((1, 2, 2, 3), np.uint8), np.zeros(1, np.int64), ("a",)), None)


MARKED = DataFormat("marked", "a folder holding MARK", _marked_folder, _one_image)


def _manager(*formats: DataFormat) -> pluggy.PluginManager:
    """A fresh manager with the shipped ImageFolder and `formats` from a third-party package."""
    manager = new_manager()
    manager.register(image_folder)
    manager.register(_format_plugin("thirdparty_pkg.plugin", *formats))
    return manager


def test_a_third_party_format_wins_over_the_generic_image_folder(tiny_data, tmp_path):
    root = tmp_path / "marked"
    shutil.copytree(tiny_data, root)  # class folders of images too
    (root / "MARK").touch()
    assert len(open_data(root, manager=_manager(MARKED)).train) == 1
    assert len(open_data(tiny_data, manager=_manager(MARKED)).train) == 200


def test_formats_are_asked_by_name_and_the_image_folder_last():
    zebra = DataFormat("zebra", "z", _marked_folder, _one_image)
    alpha = DataFormat("alpha", "a", _marked_folder, _one_image)
    names = [f.name for f in loading.data_formats(_manager(zebra, alpha))]
    assert names == ["alpha", "zebra", "imagefolder"]
    assert [f.name for f in loading.data_formats()][-1] == "imagefolder"


def test_an_archive_is_extracted_before_detection(tmp_path):
    folder = tmp_path / "wrapped"
    folder.mkdir()
    (folder / "MARK").touch()
    archive = tmp_path / "wrapped.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="wrapped")  # one top folder, as archives often have
    assert len(open_data(archive, manager=_manager(MARKED)).train) == 1


def test_an_unrecognised_folder_is_one_line_naming_the_formats(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(PurifyError) as raised:
        open_data(tmp_path, manager=_manager(MARKED))
    message = raised.value.format_message()
    assert "\n" not in message
    assert f"cannot read data {tmp_path}" in message and "has no class folders" in message
    assert "(marked, imagefolder)" in message and "install the plugin" in message


def test_a_detector_that_trips_is_not_the_format_and_a_failing_open_is_one_line(tmp_path):
    def trips(path: Path) -> bool:
        raise ValueError("cannot parse")

    def fails(path: Path, quiet: bool) -> Splits:
        raise KeyError("labels")

    (tmp_path / "MARK").touch()
    manager = _manager(DataFormat("trips", "t", trips, _one_image))
    with pytest.raises(PurifyError, match="none of the installed data formats"):
        open_data(tmp_path, manager=manager)
    manager = _manager(DataFormat("broken", "b", _marked_folder, fails))
    with pytest.raises(PurifyError, match=r"looks like 'broken' data but does not read \(KeyError"):
        open_data(tmp_path, manager=manager)


def _huge_header_png(path: Path, width: int, height: int) -> Path:
    """A real 1x1 PNG whose IHDR (and its CRC) is patched to declare `width` x `height`: a few
    bytes on disk, a huge image to a decoder."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def _huge_header_jpeg(path: Path, width: int, height: int) -> Path:
    """A real 8x8 JPEG whose start-of-frame is patched to declare `width` x `height`."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def _zero_png(path: Path, side: int) -> Path:
    """A valid `side` x `side` grey PNG of zeros, compressed as it is written (~1/1000 of the
    pixels on disk)."""
    row = b"\x00" * (side + 1)
    compressor = zlib.compressobj(1)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()

    def chunk(kind: bytes, content: bytes) -> bytes:
        crc = zlib.crc32(kind + content)
        return struct.pack(">I", len(content)) + kind + content + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body)
    path.write_bytes(png + chunk(b"IEND", b""))
    return path


def _class_folder_with(tmp_path: Path, make_bomb) -> Path:
    (tmp_path / "cls").mkdir(parents=True)
    Image.new("RGB", (16, 16)).save(tmp_path / "cls" / "a.png")
    make_bomb(tmp_path / "cls")
    return tmp_path


@pytest.mark.parametrize(
    ("make_bomb", "fragment"),
    [
        (lambda d: _huge_header_png(d / "b.png", 30_000, 30_000), "b.png declares an image too"),
        (lambda d: _huge_header_jpeg(d / "b.jpg", 60_000, 60_000), "b.jpg declares an image too"),
        (lambda d: _huge_header_png(d / "b.png", 12_000, 12_000), "b.png is 12000x12000 (144.0"),
    ],
    ids=["900MP png", "3600MP jpeg", "144MP png"],
)
def test_decompression_bomb_png_is_refused_before_decoding(tmp_path, make_bomb, fragment):
    """Issue #45 item 6: PIL's DecompressionBombError was a traceback, and a 144 MP image was
    decoded before any size check. Each is one line naming the file, as the only image of a
    folder (the per-image limit) and after a 16x16 one (the first image's size), also with the
    limit raised."""
    with pytest.raises(PurifyError, match="decompression bomb"):
        loading.decode_images([make_bomb(tmp_path)])
    alone = _class_folder_with(tmp_path / "alone", make_bomb)
    (alone / "cls" / "a.png").unlink()
    with pytest.raises(PurifyError, match=re.escape(fragment)):
        open_data(alone)
    mixed = _class_folder_with(tmp_path / "mixed", make_bomb)
    with pytest.raises(PurifyError, match=re.escape(fragment)):
        open_data(mixed)


BOMB_MEMORY = """
import json, resource, sys
from pathlib import Path
from purify_backdoor.data.loading import decode_images
from purify_backdoor.errors import PurifyError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    decode_images([Path(p) for p in sys.argv[1:]])
    message = None
except PurifyError as error:
    message = str(error)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"message": message, "grown_kib": grown}))
"""


@pytest.mark.parametrize("first", [False, True], ids=["alone", "after a 16x16 image"])
def test_decompression_bomb_png_is_refused_before_decoding_in_little_memory(tmp_path, first):
    """A real, valid 144 MP PNG (0.6 MB on disk) took 2.6 GB to decode; refused on its header,
    the peak memory grows by far less than its pixels (144 MB grey, 432 MB as RGB). With the
    limit raised past it, the first image's size still stops it before decoding."""
    bomb = _zero_png(tmp_path / "bomb.png", 12_000)
    paths = [bomb]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if first:
        Image.new("L", (16, 16)).save(tmp_path / "a.png")
        paths.insert(0, tmp_path / "a.png")
        env["PURIFY_MAX_IMAGE_PIXELS"] = str(10**9)
    result = subprocess.run(
        [sys.executable, "-c", BOMB_MEMORY, *map(str, paths)],
        capture_output=True, text=True, env=env, check=True, timeout=120,
    )  # fmt: skip
    outcome = json.loads(result.stdout)
    expected = "is 12000x12000, but the data set's images are 16x16" if first else "144.0 mega"
    assert outcome["message"] and expected in outcome["message"]
    assert outcome["grown_kib"] < 50 * 1024, outcome


def test_the_image_size_limit_is_raised_or_lowered_by_its_variable(tmp_path, monkeypatch):
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    monkeypatch.setenv("PURIFY_MAX_IMAGE_PIXELS", "255")
    with pytest.raises(PurifyError, match="a.png is 16x16 .*PURIFY_MAX_IMAGE_PIXELS=N"):
        loading.decode_images([tmp_path / "a.png"])
    monkeypatch.setenv("PURIFY_MAX_IMAGE_PIXELS", "256")
    assert loading.decode_images([tmp_path / "a.png"]).shape == (1, 16, 16, 3)
    monkeypatch.setenv("PURIFY_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(PurifyError, match="PURIFY_MAX_IMAGE_PIXELS='lots' is not a positive"):
        loading.decode_images([tmp_path / "a.png"])


def test_decompression_bomb_in_data_is_one_line_exit_2(tmp_path, tiny_data):
    model = tmp_path / "model.pth.tar"
    torch.save({"state_dict": tiny_wideresnet().state_dict()}, model)
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    _huge_header_png(sorted((data / "train").iterdir())[0] / "bomb.png", 30_000, 30_000)
    result = invoke("--plugin", "finetune", model, "--data", data, "-q")
    assert_one_line_error(result, "bomb.png declares an image too large", "decompression bomb")
