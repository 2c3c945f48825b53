"""A tiny TrojAI round folder: a whole pickled model, config.json and example images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from purify_backdoor.checkpoints import open_checkpoint
from purify_backdoor.cli import cli
from purify_backdoor.data.loading import open_data
from purify_backdoor.errors import PurifyError


def tiny_classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=4), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
    )  # fmt: skip


def make_folder(root, model_object=None):
    folder = root / "id-00000007"
    examples = folder / "clean_example_data"
    examples.mkdir(parents=True)
    torch.save(model_object if model_object is not None else tiny_classifier(), folder / "model.pt")
    (folder / "config.json").write_text(json.dumps({"NUMBER_CLASSES": 3}))
    rng = np.random.default_rng(0)
    for label in range(3):
        for n in range(4):
            pixels = rng.integers(0, 256, size=(230, 230, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(examples / f"class_{label}_example_{n}.png")
    return folder


class WritesAFile:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_refuses_without_trust_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    folder = make_folder(tmp_path, WritesAFile(marker))
    with pytest.raises(PurifyError, match="--trust-checkpoint"):
        open_checkpoint(folder)
    assert not marker.exists()
    result = CliRunner().invoke(cli, ["eval", str(folder), "--data", str(folder), "-q"])
    assert result.exit_code == 2 and "--trust-checkpoint" in result.stderr
    assert not marker.exists()


def test_trusted_load_crops_and_round_trips(tmp_path):
    folder = make_folder(tmp_path)
    adapter, loaded = open_checkpoint(folder, trust=True)
    assert adapter.name == "trojai" and loaded.convention.num_classes == 3
    batch = torch.rand(2, 3, 230, 230)
    inner = loaded.model.inner
    assert torch.equal(loaded.model(batch), inner(batch[..., 3:227, 3:227]))
    out = tmp_path / "out"
    adapter.save(loaded, loaded.model, out)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.pt"]
    reloaded = open_checkpoint(out, trust=True)[1].model
    assert torch.equal(loaded.model(batch), reloaded(batch))


def test_example_images_are_a_data_set(tmp_path):
    data = open_data(make_folder(tmp_path)).train
    assert len(data) == 12 and data.num_classes == 3 and data.images.shape[1:] == (230, 230, 3)
    assert np.bincount(data.labels).tolist() == [4, 4, 4]


def test_purify_writes_a_folder_beside_the_input(tmp_path):
    folder = make_folder(tmp_path)
    args = ["--plugin", "finetune", str(folder), "--data", str(folder), "--trust-checkpoint",
            "--n-clean", "6", "-o", "epochs=1", "-q"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    out = tmp_path / "id-00000007.purified"
    assert (out / "model.pt").is_file() and (out / "config.json").is_file()
    assert (tmp_path / "id-00000007.purified.report.json").is_file()
