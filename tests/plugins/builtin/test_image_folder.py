"""The ImageFolder format: told by class folders that hold images, with or without train/ and
test/."""

from __future__ import annotations

import os
import shutil

import pytest
from PIL import Image

from purify_backdoor.builtin.image_folder import detect, open_folder
from purify_backdoor.data.loading import open_data
from purify_backdoor.errors import PurifyError


def test_detected_by_its_class_folders_of_images(tiny_data, tmp_path):
    assert detect(tiny_data) and detect(tiny_data / "train")
    (tmp_path / "empty_class").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    assert not detect(tmp_path)  # a folder of folders is not yet a data set
    assert not detect(tmp_path / "notes.txt")
    Image.new("RGB", (4, 4)).save(tmp_path / "empty_class" / "a.bmp")  # any suffix PIL decodes
    assert detect(tmp_path)


def test_train_and_test_or_class_folders_alone(tiny_data):
    splits = open_folder(tiny_data, quiet=True)
    assert (len(splits.train), len(splits.test)) == (200, 100)
    alone = open_folder(tiny_data / "test", quiet=True)
    assert len(alone.train) == 100 and alone.test is None


def test_train_and_test_must_share_their_classes(tiny_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    shutil.rmtree(sorted((root / "test").iterdir())[0])
    with pytest.raises(PurifyError, match="train/ and test/ have different class folders"):
        open_folder(root, quiet=True)


def _small_folder(root):
    for name in ("a", "b"):
        (root / "train" / name).mkdir(parents=True)
        for n in range(2):
            Image.new("RGB", (8, 8), (n, 0, 0)).save(root / "train" / name / f"{n}.png")
    return root


def _zero_link(root):
    (root / "train" / "a" / "zero.png").symlink_to("/dev/zero")
    return "zero.png is a symbolic link to /dev/zero.*cp -rL"


def _fifo(root):
    os.mkfifo(root / "train" / "a" / "pipe.png")
    return "pipe.png is a fifo.*remove it"


def _image_elsewhere(root):
    Image.new("RGB", (8, 8)).save(root.parent / "elsewhere.png")
    (root / "train" / "a" / "2.png").symlink_to(root.parent / "elsewhere.png")
    return "2.png is a symbolic link.*cp -rL"


def _class_folder_elsewhere(root):
    shutil.copytree(root / "train" / "b", root.parent / "c")
    (root / "train" / "c").symlink_to(root.parent / "c", target_is_directory=True)
    return "train/c is a symbolic link.*cp -rL"


def _split_elsewhere(root):
    shutil.copytree(root / "train", root.parent / "test")
    (root / "test").symlink_to(root.parent / "test", target_is_directory=True)
    return "test is a symbolic link.*cp -rL"


@pytest.mark.parametrize(
    "make", [_zero_link, _fifo, _image_elsewhere, _class_folder_elsewhere, _split_elsewhere]
)
def test_symlink_or_fifo_in_image_folder_is_refused_never_read(tmp_path, make):
    """Issue #45 item 5: a link to /dev/zero, a fifo named like an image, or a link out of the
    data set is one line naming it and the fix; nothing behind it is opened."""
    root = _small_folder(tmp_path / "data")
    fragment = make(root)
    with pytest.raises(PurifyError, match=fragment):
        open_data(root)
