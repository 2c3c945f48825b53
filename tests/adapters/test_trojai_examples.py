"""A TrojAI model folder's clean example images as a data set, asked before the generic
ImageFolder: its example folders are class folders of images too."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from purify_backdoor.adapters.trojai.examples import detect
from purify_backdoor.data.loading import open_data
from purify_backdoor.errors import PurifyError


def _png(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, 0, 0)).save(path)


def test_named_examples_are_not_read_as_an_image_folder(tmp_path):
    for label in range(3):
        for n in range(2):
            _png(tmp_path / "clean_example_data" / f"class_{label}_example_{n}.png", label)
    assert detect(tmp_path)
    data = open_data(tmp_path).train
    assert data.labels.tolist() == [0, 0, 1, 1, 2, 2]  # not one class named clean_example_data
    assert data.classes == ("0", "1", "2")


def test_labelled_examples_take_their_labels_from_the_json_beside_them(tmp_path):
    folder = tmp_path / "new-clean-example-data"
    for index, label in enumerate([2, 0]):
        _png(folder / f"{index}.png", index)
        (folder / f"{index}.json").write_text(json.dumps({"clean_label": label}))
    assert open_data(tmp_path).train.labels.tolist() == [2, 0]
    (folder / "1.json").write_text('"a cat"')
    with pytest.raises(PurifyError, match="1.json should hold the image's class label"):
        open_data(tmp_path)


def test_a_plain_image_folder_is_not_trojai(tiny_data, tmp_path):
    assert not detect(tiny_data) and not detect(tiny_data / "train")
    np.save(tmp_path / "x.npy", np.zeros(3))
    assert not detect(tmp_path / "x.npy")
