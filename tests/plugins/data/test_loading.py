import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from plugins.data.loading import open_data
from plugins.errors import PurifyError


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
