"""Issue #7's bad-input table: every row is one line on stderr naming the problem and the fix,
exit code 2, and no model or report written (a defense's resumable work folder may stay)."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import tiny_wideresnet
from tests.plugins.test_cli import assert_one_line_error, invoke


def save_nad(path: Path, state: dict) -> Path:
    torch.save({"epoch": 1, "state_dict": state}, path)
    return path


def valid(root: Path) -> Path:
    return save_nad(root / "model.pth.tar", tiny_wideresnet().state_dict())


def truncated(root: Path) -> Path:
    data = valid(root).read_bytes()
    (root / "cut.pth.tar").write_bytes(data[: len(data) // 2])
    return root / "cut.pth.tar"


def corrupted(root: Path) -> Path:
    """Flipped bytes inside the largest tensor's data (torch itself would load it silently)."""
    path = valid(root)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        largest = archive.read(max(archive.infolist(), key=lambda info: info.file_size))
    start = data.find(largest) + len(largest) // 2
    data[start : start + 16] = bytes(255 - b for b in data[start : start + 16])
    (root / "bad.pth.tar").write_bytes(bytes(data))
    return root / "bad.pth.tar"


def seven_classes(root: Path) -> Path:
    model = tiny_wideresnet()
    model.fc = torch.nn.Linear(model.fc.in_features, 7)
    return save_nad(root / "seven.pth.tar", model.state_dict())


def plain_state_dict(root: Path) -> Path:
    torch.save(tiny_wideresnet().state_dict(), root / "weights.pth")
    return root / "weights.pth"


def odd_image(size: int, mode: str) -> Callable[[Path, Path], Path]:
    def make(root: Path, data: Path) -> Path:
        copy = root / "data"
        shutil.copytree(data, copy)
        folder = sorted((copy / "train").iterdir())[0]
        shape = (size, size, 3) if mode == "RGB" else (size, size)
        Image.fromarray(np.zeros(shape, np.uint8), mode).save(folder / "odd.png")
        return copy

    return make


def empty_folder(root: Path, data: Path) -> Path:
    (root / "empty").mkdir()
    return root / "empty"


def raise_out_of_memory(*args, **kwargs):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


# (row id, model maker, data maker or None for the tiny data set, extra args, message fragments)
ROWS = [
    ("missing model", lambda r: r / "absent.pth", None, [], ["does not exist"]),
    ("empty model", lambda r: (r / "e.pth").touch() or r / "e.pth", None, [], ["is empty"]),
    ("truncated model", truncated, None, [], ["truncated or damaged", "download or copy"]),
    ("corrupted model", corrupted, None, [], ["corrupted (CRC mismatch", "download or copy"]),
    (
        "unknown format",
        lambda r: torch.save({"weights": [1, 2]}, r / "u.pt") or r / "u.pt",
        None, [], ["cannot recognise the checkpoint", "--format NAME"],
    ),
    (
        "wrong architecture",
        plain_state_dict, None, ["--arch", "wrn16-1"],
        ["does not fit architecture wrn16-1", "missing (", "pass the right --arch"],
    ),
    ("class count", seven_classes, None, [], ["the model has 7 classes", "has 10"]),
    ("data missing", valid, lambda r, d: r / "nowhere", [], ["does not exist", "ImageFolder"]),
    ("data empty", valid, empty_folder, [], ["has no class folders"]),
    ("image size", valid, odd_image(20, "RGB"), [], ["odd.png is 20x20", "resize"]),
    ("image mode", valid, odd_image(16, "L"), [], ["odd.png is a L image", "convert"]),
    ("ratio zero", valid, None, ["--ratio", "0"], ["--ratio must be in (0, 1]"]),
    ("ratio above one", valid, None, ["--ratio", "1.5"], ["--ratio must be in (0, 1]"]),
    ("fewer than classes", valid, None, ["--n-clean", "5"], ["choose --n-clean between 10"]),
    ("unknown plugin", valid, None, ["--plugin", "nope"], ["unknown defense 'nope'"]),
    (
        "unknown -o option", valid, None, ["-o", "epoch=1"],
        ["unknown option 'epoch'", "valid options: batch_size, epochs"],
    ),
    ("unknown flag", valid, None, ["--epoch", "1"], ["unknown option --epoch", "--epochs"]),
    ("ill-typed -o option", valid, None, ["-o", "epochs=many"], ["expects int, got 'many'"]),
    ("ill-typed flag", valid, None, ["--epochs", "many"], ["'many' is not a valid integer"]),
    ("option without value", valid, None, ["-o", "epochs"], ["-o expects key=value"]),
    (
        "nan loss", valid, None, ["--ratio", "0.5", "-o", "epochs=3", "-o", "lr=1e30"],
        ["the loss became nan at epoch", "step", "lower the learning rate"],
    ),
    (
        "non-finite model", valid, None, ["-o", "epochs=1", "-o", "lr=1e30"],
        ["produced a model with non-finite values", "nothing was written"],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("make_model", "make_data", "extra", "fragments"),
    [pytest.param(*row[1:], id=row[0]) for row in ROWS],
)
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path, tiny_data, make_model, make_data, extra, fragments
):
    model = make_model(tmp_path)
    data = make_data(tmp_path, tiny_data) if make_data else tiny_data
    plugin = [] if "--plugin" in extra else ["--plugin", "finetune"]
    before = {path for path in tmp_path.rglob("*")}
    result = invoke(*plugin, model, "--data", data, "-q", *extra)
    assert_one_line_error(result, *fragments)
    written = {path for path in tmp_path.rglob("*") if ".work" not in str(path)} - before
    assert not written, written


def test_out_of_memory_suggests_a_smaller_batch(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setattr("purify_backdoor.builtin.finetune.fit", raise_out_of_memory)
    result = invoke("--plugin", "finetune", valid(tmp_path), "--data", tiny_data, "-q")
    assert_one_line_error(result, "out of memory", "smaller batch size (-o batch_size=N)")
    assert not tmp_path.joinpath("model.purified.pth.tar").exists()
