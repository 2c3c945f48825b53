"""Tiny TrojAI model folders laid out as each round writes them (usnistgov/trojai-example and
trojai-round-generation): a whole pickled model, config.json (jsonpickle's markers for rounds 4
and 11), clean and triggered example images."""

from __future__ import annotations

import json
import os

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
from tests.plugins.test_cli import assert_one_line_error


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
    assert sorted(p.name for p in out.iterdir()) == [
        "clean_example_data",
        "config.json",
        "model.pt",
    ]
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


class Only256(nn.Module):
    """A round-11 ViT takes 256 x 256 and nothing else (timm, img_size=256)."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(3, classes)

    def forward(self, x):
        assert x.shape[-2:] == (256, 256), "this network takes 256 x 256 only"
        return self.head(x.mean(dim=(2, 3)))


def _png(path, side, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def make_round4(root):
    """config.json as jsonpickle 1.4.1 writes RoundConfig (attributes flat beside py/object)."""
    folder = root / "id-00000004"
    folder.mkdir(parents=True)
    torch.save(tiny_classifier(), folder / "model.pt")
    trigger = {
        "py/object": "trigger_config.TriggerConfig",
        "trigger_number": 0,
        "source_class": 1,
        "target_class": 2,
        "condition": "None",
        "color": [200, 0, 0],
    }
    config = {"py/object": "round_config.RoundConfig", "number_classes": 3, "poisoned": True,
              "model_architecture": "resnet18", "trigger_organization": "one2one",
              "number_triggers": 1, "triggers": [trigger]}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    for label in range(3):
        _png(folder / "clean_example_data" / f"class_{label}_example_0.png", 256, label)
    for n in range(2):
        _png(folder / "poisoned_example_data" / f"class_1_trigger_0_example_{n}.png", 256, 9 + n)
    return folder


def make_round11(root, with_config=True):
    """config.json as jsonpickle 2.2.0 writes it (py/state), clean-example-data/<id>.jpg with a
    bare-integer <id>.json, poisoned-example-data/<id>.png whose json is the target."""
    folder = root / "id-00000011"
    folder.mkdir(parents=True)
    torch.save(Only256(3), folder / "model.pt")
    trigger = {
        "py/object": "trigger_executor.ClassificationPolygonTriggerExecutor",
        "py/state": {
            "trigger_id": 0,
            "source_class": 0,
            "target_class": 2,
            "trigger_fraction": 0.2,
        },
    }
    config = {"py/object": "round_config.RoundConfig",
              "py/state": {"number_classes": 3, "poisoned": True,
                           "model_architecture": "classification:vit_base_patch32_224",
                           "num_triggers": 1, "triggers": [trigger]}}  # fmt: skip
    if with_config:
        (folder / "config.json").write_text(json.dumps(config))
    for index, label in enumerate([0, 1, 2, 1]):
        image = folder / "clean-example-data" / f"{index + 10}.jpg"
        _png(image.with_suffix(".png"), 256, index)
        Image.open(image.with_suffix(".png")).save(image)
        image.with_suffix(".png").unlink()
        image.with_suffix(".json").write_text(str(label))
    for index in range(3):
        _png(folder / "poisoned-example-data" / f"{index + 20}.png", 256, 30 + index)
        (folder / "poisoned-example-data" / f"{index + 20}.json").write_text("2")
    return folder


def test_round4_preprocessing_classes_and_shipped_triggers(tmp_path):
    folder = make_round4(tmp_path)
    _, loaded = open_checkpoint(folder, trust=True)
    assert loaded.convention.num_classes == 3 and loaded.convention.size == (256, 256)
    assert (
        "round 4" in loaded.convention.preprocessing
        and "crop 224" in loaded.convention.preprocessing
    )
    batch = torch.rand(2, 3, 256, 256)
    assert torch.equal(loaded.model(batch), loaded.model.inner(batch[..., 16:240, 16:240]))
    triggered = loaded.triggered
    assert triggered.images.labels.tolist() == [1, 1] and triggered.targets.tolist() == [2, 2]


def test_round11_full_image_classes_from_config_and_example_layout(tmp_path):
    folder = make_round11(tmp_path)
    _, loaded = open_checkpoint(folder, trust=True)  # no 224 probe: the network takes 256 only
    assert loaded.convention.num_classes == 3
    assert "round 11" in loaded.convention.preprocessing
    assert loaded.model(torch.rand(1, 3, 256, 256)).shape == (1, 3)
    assert loaded.triggered.targets.tolist() == [2, 2, 2]
    assert loaded.triggered.images.labels.tolist() == [0, 0, 0]  # the trigger's source class
    data = open_data(folder).train
    assert data.labels.tolist() == [0, 1, 2, 1] and data.images.shape[1:] == (256, 256, 3)


def test_round1_is_bgr_min_max_without_crop(tmp_path):
    folder = tmp_path / "id-00000001"
    folder.mkdir()
    torch.save(tiny_classifier(), folder / "model.pt")
    _png(folder / "example_data" / "class_0_example_0.png", 224, 0)
    _, loaded = open_checkpoint(folder, trust=True)
    batch = torch.rand(2, 3, 224, 224) * 0.5 + 0.2
    bgr = batch.flip(1)
    low = bgr.amin(dim=(1, 2, 3), keepdim=True)
    expected = loaded.model.inner((bgr - low) / (bgr.amax(dim=(1, 2, 3), keepdim=True) - low))
    assert torch.allclose(loaded.model(batch), expected)
    assert loaded.convention.num_classes == 3  # no config.json: asked of the network


def test_unknown_layout_names_the_rounds_and_the_flag_that_forces_one(tmp_path):
    folder = make_round11(tmp_path, with_config=False)
    (folder / "clean-example-data").rename(folder / "images")
    (folder / "poisoned-example-data").rename(folder / "triggered")
    with pytest.raises(PurifyError, match=r"rounds 1, 2, 3, 4, 11, mitigation.*--trojai-round"):
        open_checkpoint(folder, trust=True)
    _, loaded = open_checkpoint(folder, trust=True, trojai_round="11")
    assert "round 11" in loaded.convention.preprocessing


def test_config_json_is_parsed_as_plain_data_never_decoded(tmp_path):
    """jsonpickle would call os.system for this `py/reduce`; plain JSON keeps it a string."""
    folder = make_round4(tmp_path)
    marker = tmp_path / "ran"
    config = json.loads((folder / "config.json").read_text())
    config["evil"] = {
        "py/reduce": [{"py/function": "os.system"}, {"py/tuple": [f"touch {marker}"]}]
    }
    (folder / "config.json").write_text(json.dumps(config))
    assert open_checkpoint(folder, trust=True)[1].convention.num_classes == 3
    assert not marker.exists()


def test_a_package_the_pickle_needs_is_named_with_the_extra(tmp_path, monkeypatch):
    import sys

    import timm  # the `trojai` extra, installed with the test extra

    network = timm.models.vision_transformer.VisionTransformer(
        img_size=256, patch_size=32, embed_dim=16, depth=1, num_heads=2, num_classes=3
    )
    folder = make_round11(tmp_path)
    torch.save(network, folder / "model.pt")
    _, loaded = open_checkpoint(folder, trust=True)
    assert loaded.model(torch.rand(1, 3, 256, 256)).shape == (1, 3)
    for name in [name for name in sys.modules if name == "timm" or name.startswith("timm.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "timm", None)  # as if timm were not installed
    with pytest.raises(
        PurifyError, match=r"needs the Python package 'timm'.*purify-backdoor\[trojai\]"
    ):
        open_checkpoint(folder, trust=True)


def test_round11_output_is_a_folder_of_the_same_round(tmp_path):
    folder = make_round11(tmp_path)
    adapter, loaded = open_checkpoint(folder, trust=True)
    out = tmp_path / "out"
    adapter.save(loaded, loaded.model, out)
    assert isinstance(torch.load(out / "model.pt", weights_only=False), Only256)
    again = open_checkpoint(out, trust=True)[1]
    assert again.convention.preprocessing == loaded.convention.preprocessing


def test_eval_measures_asr_on_the_shipped_triggered_images(tmp_path):
    folder = make_round4(tmp_path)
    out = tmp_path / "m.json"
    args = [
        "eval",
        str(folder),
        "--data",
        str(folder),
        "--trust-checkpoint",
        "-q",
        "--json",
        str(out),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())["metrics"]
    assert "asr" in metrics and 0 <= metrics["asr"] <= 1


def _secret(tmp_path):
    secret = tmp_path / "elsewhere" / "hostname"
    secret.parent.mkdir()
    secret.write_text("secret-host-name\n")
    return secret


@pytest.mark.parametrize("entry", ["leak.txt", "clean_example_data/class_0_example_9.png"])
def test_symlink_in_trojai_folder_is_never_followed(tmp_path, entry):
    """Issue #45 item 5: `leak.txt -> /etc/hostname` became a regular file of the purified
    folder (copytree follows links). A link anywhere in the folder is refused before loading."""
    folder = make_folder(tmp_path)
    (folder / entry).symlink_to(_secret(tmp_path))
    with pytest.raises(PurifyError, match=f"{entry} is a symbolic link to .*hostname.*cp -rL"):
        open_checkpoint(folder, trust=True)
    args = ["--plugin", "finetune", str(folder), "--data", str(folder),
            "--trust-checkpoint", "--n-clean", "6", "-o", "epochs=1", "-q"]  # fmt: skip
    assert_one_line_error(CliRunner().invoke(cli, args), entry, "symbolic link")
    assert not (tmp_path / "id-00000007.purified").exists()


def test_fifo_or_device_link_in_trojai_folder_is_refused_without_reading(tmp_path):
    """A fifo or a link to /dev/zero would block or fill the disk when copied or hashed."""
    folder = make_folder(tmp_path)
    os.mkfifo(folder / "pipe")
    with pytest.raises(PurifyError, match="pipe is a fifo"):
        open_checkpoint(folder, trust=True)
    (folder / "pipe").unlink()
    (folder / "zero").symlink_to("/dev/zero")
    with pytest.raises(PurifyError, match="zero is a symbolic link to /dev/zero"):
        open_checkpoint(folder, trust=True)
    (folder / "clean_example_data" / "class_0_example_9.png").symlink_to("/dev/zero")
    with pytest.raises(PurifyError, match="class_0_example_9.png is a symbolic link to /dev/zero"):
        open_data(folder)


def test_a_link_put_in_after_loading_is_not_copied_into_the_output(tmp_path):
    folder = make_folder(tmp_path)
    adapter, loaded = open_checkpoint(folder, trust=True)
    (folder / "leak.txt").symlink_to(_secret(tmp_path))
    with pytest.raises(PurifyError, match="leak.txt is a symbolic link"):
        adapter.save(loaded, loaded.model, tmp_path / "out")
    assert not (tmp_path / "out" / "leak.txt").exists()
