"""The ImageFolder format: told by class folders that hold images, with or without train/ and
test/."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from purify_backdoor.builtin.image_folder import detect, open_folder
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
