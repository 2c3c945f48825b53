"""State dicts as people save them: plain, wrapped in a training checkpoint, pre-1.6 files, and
BackdoorBox's CIFAR ResNet."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from purify_backdoor.checkpoint_source import CheckpointSource
from purify_backdoor.checkpoints import open_checkpoint
from purify_backdoor.cli import cli
from purify_backdoor.errors import PurifyError
from purify_backdoor.models.cifar_resnet import CifarResNet
from tests.conftest import tiny_wideresnet


def _weights(prefix=""):
    return {prefix + key: value.clone() for key, value in tiny_wideresnet().state_dict().items()}


@pytest.mark.parametrize(
    ("container", "path"),
    [
        (
            lambda w: {"model_state_dict": w, "optimizer_state_dict": {}, "epoch": 9},
            ("model_state_dict",),
        ),
        (lambda w: {"net_state_dict": w, "acc": 0.9}, ("net_state_dict",)),
        (lambda w: {"net": w, "acc": 91.2, "epoch": 199}, ("net",)),  # kuangliu/pytorch-cifar
        (lambda w: {"model": w, "args": {"lr": 0.1}}, ("model",)),
        (lambda w: {"model": {"state_dict": w}, "epoch": 3}, ("model", "state_dict")),
    ],
)
def test_wrapped_containers_load_and_write_back_under_the_same_keys(tmp_path, container, path):
    file = tmp_path / "ckpt.pth"
    payload = container(_weights())
    torch.save(payload, file)
    adapter, loaded = open_checkpoint(file)
    assert adapter.name == "state_dict" and loaded.arch == "wrn10-1"
    out = tmp_path / "out.pth"
    adapter.save(loaded, loaded.model, out)
    written = CheckpointSource(out).payload()
    assert written.keys() == payload.keys()
    inner = written
    for key in path:
        inner = inner[key]
    assert inner.keys() == _weights().keys()
    assert all(written[k] == payload[k] for k in payload if k not in path[:1])


def test_module_prefix_is_kept_on_the_way_back(tmp_path):
    file = tmp_path / "dp.pth"
    torch.save({"state_dict_ema": 1, "net": _weights("module.")}, file)
    adapter, loaded = open_checkpoint(file)
    adapter.save(loaded, loaded.model, tmp_path / "out.pth")
    assert all(
        k.startswith("module.") for k in CheckpointSource(tmp_path / "out.pth").payload()["net"]
    )


def test_a_legacy_pre_1_6_file_loads_weights_only_and_is_written_back_legacy(tmp_path):
    file = tmp_path / "old.pth"
    torch.save({"net": _weights(), "epoch": 1}, file, _use_new_zipfile_serialization=False)
    source = CheckpointSource(file)
    assert source.is_legacy
    adapter, loaded = open_checkpoint(file)
    assert loaded.legacy
    out = tmp_path / "out.pth"
    adapter.save(loaded, loaded.model, out)
    assert out.read_bytes()[:4] != b"PK\x03\x04" and CheckpointSource(out).is_legacy
    assert not CheckpointSource(tmp_path / "missing.pth").is_legacy


def test_backdoorbox_cifar_resnet_is_recognised_from_its_keys(tmp_path):
    torch.manual_seed(0)
    network = CifarResNet(18, 10).eval()
    file = tmp_path / "backdoorbox_resnet18.pth"
    torch.save(network.state_dict(), file)  # what BackdoorBox's trainer saves
    _, loaded = open_checkpoint(file)
    assert loaded.arch == "cifar_resnet18"
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded.model(x), network(x))


def test_a_state_dict_no_architecture_fits_asks_for_arch(tmp_path):
    file = tmp_path / "odd.pth"
    torch.save({"model_state_dict": {"encoder.weight": torch.zeros(4, 3)}}, file)
    with pytest.raises(PurifyError, match=r"under model_state_dict.*--arch NAME"):
        open_checkpoint(file)


def test_the_report_says_a_legacy_input_was_written_back_legacy(tmp_path, tiny_data):
    file = tmp_path / "old.pth"
    torch.save(_weights(), file, _use_new_zipfile_serialization=False)
    args = ["--plugin", "finetune", str(file), "--data", str(tiny_data), "-o", "epochs=1",
            "--ratio", "0.5", "-q", "--no-html"]  # fmt: skip
    assert CliRunner().invoke(cli, args).exit_code == 0
    report = json.loads((tmp_path / "old.purified.pth.report.json").read_text())
    assert report["input"]["serialization"] == report["output"]["serialization"]
    assert report["input"]["serialization"].startswith("legacy")
    assert CheckpointSource(tmp_path / "old.purified.pth").is_legacy
