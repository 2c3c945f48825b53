"""The .npz format is told by its suffix and the zip magic every .npz starts with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from purify_backdoor.builtin.npz_arrays import detect, load_npz
from purify_backdoor.errors import PurifyError


def test_detected_by_suffix_and_magic(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((2, 4, 4, 3), np.uint8), y=np.array([0, 1]))
    assert detect(path)
    (tmp_path / "fake.npz").write_text("x,y\n")
    assert not detect(tmp_path / "fake.npz")
    assert not detect(tmp_path)
    splits = load_npz(path)
    assert len(splits.train) == 2 and splits.test is None


def arrays(count: int = 20, classes: int = 10) -> dict[str, np.ndarray]:
    images = np.random.default_rng(0).integers(0, 256, (count, 4, 4, 3), dtype=np.uint8)
    return {"x": images, "y": np.arange(count) % classes}


def saved(path: Path, **given: np.ndarray) -> Path:
    np.savez(path, **given)
    return path


def test_zero_byte_npz_is_a_data_error_not_an_interruption(tmp_path):
    """numpy's EOFError on an empty file became click's Abort, reported as a Ctrl-C (exit 130)."""
    (tmp_path / "zero.npz").touch()
    assert detect(tmp_path / "zero.npz")
    with pytest.raises(PurifyError, match=r"zero.npz is empty \(0 bytes\); copy or write"):
        load_npz(tmp_path / "zero.npz")


def test_truncated_npz_is_a_damaged_file_not_a_bad_zip_traceback(tmp_path):
    data = saved(tmp_path / "d.npz", **arrays()).read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(PurifyError, match=r"cut.npz is not a readable .npz: the file is truncated"):
        load_npz(tmp_path / "cut.npz")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            {"x": np.zeros((0, 4, 4, 3), np.uint8), "y": np.zeros(0, np.int64)},
            r"'x' holds no images; store at least one per class",
        ),
        (
            arrays() | {"y": np.arange(15) % 10},
            r"'x' has 20 images but 'y' has shape \(15,\); store one integer label per image",
        ),
        (
            arrays() | {"y": (np.arange(20) % 10) + 0.5},
            r"'y' holds float64 labels that are not class indices \(e.g. 0.5\)",
        ),
        (arrays() | {"y": np.array(["cat"] * 20)}, r"'y' must hold integer class indices, got <U3"),
    ],
    ids=["empty", "length mismatch", "float labels", "text labels"],
)
def test_malformed_arrays_are_one_line_errors(tmp_path, given, message):
    with pytest.raises(PurifyError, match=message) as error:
        load_npz(saved(tmp_path / "d.npz", **given))
    assert "\n" not in error.value.format_message()


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    path = saved(tmp_path / "d.npz", **arrays() | {"y": np.array([object()] * 20)})
    with pytest.raises(PurifyError, match=r"array 'y' holds Python objects, which only unpickling"):
        load_npz(path)


def test_whole_float_labels_are_class_indices(tmp_path):
    splits = load_npz(saved(tmp_path / "d.npz", **arrays() | {"y": np.arange(20.0) % 10}))
    assert splits.train.labels.dtype == np.int64 and splits.train.num_classes == 10


def test_one_class_training_data_under_ten_names_is_a_one_line_warning(tmp_path, capsys):
    given = arrays() | {"y": np.zeros(20, np.int64), "classes": np.array(list("abcdefghij"))}
    path = saved(tmp_path / "d.npz", **given)
    assert load_npz(path, quiet=False).train.num_classes == 10
    warning = capsys.readouterr().err.splitlines()
    assert len(warning) == 1 and "every training image ('y') is class 0 of 10 classes" in warning[0]
    load_npz(path, quiet=True)
    assert capsys.readouterr().err == ""
