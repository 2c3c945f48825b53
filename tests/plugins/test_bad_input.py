"""Issue #7's bad-input table: every row is one line on stderr naming the problem and the fix,
exit code 2, and no model or report written (a defense's resumable work folder may stay)."""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from purify_backdoor.cli import PurifyGroup
from purify_backdoor.data.synthetic import synthetic_images
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


def non_finite(root: Path) -> Path:
    """Weights that diverged before purify saw them: NaN in one tensor, Inf in another."""
    state = tiny_wideresnet().state_dict()
    state["conv1.weight"][0, 0, 0, 0] = float("nan")
    state["fc.bias"][3] = float("inf")
    return save_nad(root / "diverged.pth.tar", state)


class RunsCode:
    """Unpickling this calls print: a stand-in for a checkpoint that would run code."""

    def __reduce__(self):
        return (print, ("unpickled",))


def runs_code(root: Path) -> Path:
    torch.save({"state_dict": RunsCode()}, root / "code.pth")
    return root / "code.pth"


def npz(**arrays: np.ndarray) -> Callable[[Path, Path], Path]:
    def make(root: Path, data: Path) -> Path:
        np.savez(root / "data.npz", **arrays)
        return root / "data.npz"

    return make


def zero_byte_npz(root: Path, data: Path) -> Path:
    (root / "data.npz").touch()
    return root / "data.npz"


def truncated_npz(root: Path, data: Path) -> Path:
    whole = npz(**IMAGES)(root, data).read_bytes()
    (root / "data.npz").write_bytes(whole[: len(whole) // 2])
    return root / "data.npz"


SYNTHETIC = synthetic_images(40, 16, seed=0)
IMAGES = {"x": SYNTHETIC.images, "y": SYNTHETIC.labels}
TEN_NAMES = np.array([str(k) for k in range(10)])


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
    # issue #45, item 3: values that ran and handed the input back as "purified"
    ("epochs zero", valid, None, ["--epochs", "0"],
     ["'epochs' of defense 'finetune' must be >= 1, got 0"]),
    ("epochs negative", valid, None, ["--epochs", "-1"], ["must be >= 1, got -1", "-o epochs=10"]),
    ("batch size negative", valid, None, ["-o", "batch_size=-4"],
     ["'batch_size'", "must be >= 1, got -4"]),
    ("input scale zero", valid, None, ["--input-scale", "0"], ["--input-scale must be > 0, got 0"]),
    ("n-clean zero", valid, None, ["--n-clean", "0"], ["--n-clean must be >= 1, got 0"]),
    ("ratio not a number", valid, None, ["--ratio", "nan"], ["--ratio must be in (0, 1], got nan"]),
    # issue #45, item 8: tracebacks on bad input
    ("lr negative", valid, None, ["-o", "lr=-1"],
     ["'lr' of defense 'finetune' must be > 0, got -1.0"]),
    ("lr not finite", valid, None, ["-o", "lr=inf"],
     ["'lr' of defense 'finetune' expects a finite number"]),
    ("batch size zero", valid, None, ["-o", "batch_size=0"],
     ["'batch_size'", "must be >= 1, got 0"]),
    ("seed negative", valid, None, ["--seed", "-1"], ["--seed must be in [0, 4294967295], got -1"]),
    ("empty npz", valid, npz(x=np.zeros((0, 16, 16, 3), np.uint8), y=np.zeros(0, np.int64)), [],
     ["'x' holds no images"]),
    ("truncated npz", valid, truncated_npz, [], ["is not a readable .npz: the file is truncated"]),
    ("zero-byte npz", valid, zero_byte_npz, [], ["data.npz is empty (0 bytes)"]),
    ("npz length mismatch", valid, npz(x=IMAGES["x"], y=IMAGES["y"][:30]), [],
     ["'x' has 40 images but 'y' has shape (30,)"]),
    ("npz object arrays", valid, npz(x=IMAGES["x"], y=np.array([object()] * 40)), [],
     ["array 'y' holds Python objects", "store it as a plain numeric"]),
    # issue #45, item 9: messages that pointed the wrong way
    ("non-finite input", non_finite, None, [],
     ["the input model has NaN/Inf weights in 2 tensor(s): conv1.weight, fc.bias"]),
    ("pickled code", runs_code, None, [], ["would run code when loaded", "--trust-checkpoint"]),
    ("float labels", valid, npz(x=IMAGES["x"], y=IMAGES["y"] + 0.5), [],
     ["'y' holds float64 labels that are not class indices"]),
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


def test_eof_is_a_data_error_and_only_ctrl_c_an_interruption():
    """click turns an EOFError (numpy on an empty file) into the Abort Ctrl-C gives: it must read
    as an input error (exit 2), and only a real KeyboardInterrupt as an interruption (130)."""

    @click.group(cls=PurifyGroup)
    def group() -> None:
        pass

    @group.command()
    def ends() -> None:
        raise EOFError("No data left in file")

    @group.command()
    def interrupted() -> None:
        raise KeyboardInterrupt

    ended = CliRunner().invoke(group, ["ends"])
    assert_one_line_error(ended, "an input file ended before its data did", "No data left in file")
    assert ended.stderr.startswith("Error: ")  # not after the blank line click's Abort prints
    assert "Interrupted" not in ended.output
    stopped = CliRunner().invoke(group, ["interrupted"])
    assert stopped.exit_code == 130 and "--resume" in stopped.stderr


def test_an_empty_trigger_file_is_not_an_interruption(tmp_path, tiny_data):
    """The same EOFError from an attack option's file (trojan's trigger_file), past the data
    loader: exit 2 and one line, never "Interrupted ... --resume"."""
    (tmp_path / "trigger.npz").touch()
    out = tmp_path / "trojan.pth.tar"
    result = invoke("attack", "--plugin", "trojan", "--data", tiny_data, "--arch", "wrn10-1",
                    "--n-train", "100", "--epochs", "1", "--out", out, "-q",
                    "-o", f"trigger_file={tmp_path / 'trigger.npz'}")  # fmt: skip
    assert_one_line_error(result, "an input file ended before its data did")
    assert not out.exists()


def test_nan_weights_in_the_input_are_named_before_any_work(tmp_path, tiny_data):
    """With --accept-low-accuracy (set for tests) they were blamed on the learning rate, after a
    training that left a .work folder behind."""
    model = non_finite(tmp_path)
    result = invoke("--plugin", "finetune", model, "--data", tiny_data, "-q", "-o", "epochs=1")
    assert_one_line_error(result, "the input model has NaN/Inf weights", "conv1.weight")
    assert "learning rate" not in result.stderr and "normalization" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["diverged.pth.tar"]


def test_the_weights_only_refusal_does_not_advise_weights_only_false(tmp_path, tiny_data):
    result = invoke("--plugin", "finetune", runs_code(tmp_path), "--data", tiny_data, "-q")
    assert_one_line_error(result, "would run code when loaded", "--trust-checkpoint")
    assert "weights_only=False" not in result.stderr and "add_safe_globals" not in result.stderr
    assert "unpickled" not in result.output


def test_a_defense_returning_its_input_is_unchanged_not_purified(tmp_path, tiny_data, monkeypatch):
    """A defense that hands back the weights it was given, without saying so, goes the unchanged
    way: exit 3, status "unchanged", no model written."""
    monkeypatch.setattr("purify_backdoor.builtin.finetune.fit", lambda model, *a, **k: model)
    model = valid(tmp_path)
    result = invoke("--plugin", "finetune", model, "--data", tiny_data, "-q", "--no-html")
    assert result.exit_code == 3, result.output
    assert "unchanged (the defense returned the weights it was given)" in result.stderr
    out = tmp_path / "model.purified.pth.tar"
    assert not out.exists()
    report = json.loads(out.with_name(out.name + ".report.json").read_text())
    assert report["status"] == "unchanged" and report["output"]["written"] is False


def test_one_class_data_under_ten_class_names_is_warned_about(tmp_path, tiny_data):
    data = npz(x=IMAGES["x"], y=np.zeros(40, np.int64), classes=TEN_NAMES)(tmp_path, tiny_data)
    result = invoke("--plugin", "finetune", valid(tmp_path), "--data", data, "-o", "epochs=1")
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]
    assert any("every training image ('y') is class 0 of 10 classes" in w for w in warnings)
