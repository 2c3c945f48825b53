"""A tiny BackdoorBench record folder, built here the way BackdoorBench writes one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from purify_backdoor.checkpoints import open_checkpoint
from purify_backdoor.cli import cli
from purify_backdoor.models.normalized import Normalized
from purify_backdoor.models.preact_resnet import PreActResNet

POISONED = {3: (0, 7), 5: (0, 2), 9: (0, 4)}  # test index -> (backdoor label, true label)


def make_record(root, with_images=True, prefix="module.", dataset="cifar10"):
    """record/badnet/attack_result.pt whose bd_test paths point at another machine."""
    folder = root / "record" / "badnet"
    torch.manual_seed(0)
    state = {prefix + k: v for k, v in PreActResNet((1, 1, 1, 1), 10).state_dict().items()}
    data_dict = {}
    rng = np.random.default_rng(0)
    for index, (bd_label, label) in POISONED.items():
        stored = f"/home/attacker/BackdoorBench/record/badnet/bd_test_dataset/{label}/{index}.png"
        data_dict[index] = {"path": stored, "other_info": [bd_label, label]}
        if with_images:
            local = folder / "bd_test_dataset" / str(label) / f"{index}.png"
            local.parent.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(local)
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "model_name": "preactresnet18",
        "num_classes": 10,
        "model": state,
        "data_path": "./data/cifar10",
        "img_size": [32, 32, 3],
        "clean_data": dataset,
        "bd_train": None,
        "bd_test": {
            "bd_data_container": {
                "save_folder_path": "/home/attacker/BackdoorBench/record/badnet/bd_test_dataset",
                "data_dict": data_dict,
                "save_file_format": ".png",
            },
            "getitem_all": True,
            "getitem_all_switch": False,
            "original_index_array": np.arange(10),
            "poison_indicator": np.isin(np.arange(10), list(POISONED)).astype(np.int64),
            "save_folder_path": "/home/attacker/BackdoorBench/record/badnet/bd_test_dataset",
        },
    }
    path = folder / "attack_result.pt"
    torch.save(record, path)
    return path


@pytest.fixture(autouse=True)
def small_preactresnet(monkeypatch):
    """A one-block-per-stage PreActResNet under the BackdoorBench name, to keep tests fast."""
    import purify_backdoor.models.registry as registry

    monkeypatch.setitem(registry._PREACT, "preactresnet18", (1, 1, 1, 1))


def test_detects_loads_and_reads_the_poisoned_test_set(tmp_path):
    adapter, loaded = open_checkpoint(make_record(tmp_path))
    assert adapter.name == "backdoorbench" and loaded.arch == "preactresnet18"
    assert isinstance(loaded.model, Normalized)
    assert loaded.convention.mean == (0.4914, 0.4822, 0.4465) and loaded.convention.size == (32, 32)
    triggered = loaded.triggered
    assert triggered.images.labels.tolist() == [7, 2, 4]
    assert triggered.targets.tolist() == [0, 0, 0] and triggered.images.images.shape[0] == 3


def test_round_trip_same_keys_same_outputs_and_defense_result(tmp_path):
    path = make_record(tmp_path)
    adapter, loaded = open_checkpoint(path)
    out = tmp_path / "out" / "attack_result.purified.pt"
    out.parent.mkdir()
    adapter.save(loaded, loaded.model, out)
    original = torch.load(path, weights_only=False)
    written = torch.load(out, weights_only=False)
    assert written.keys() == original.keys()
    assert written["model"].keys() == original["model"].keys()  # module. prefix kept
    defense = torch.load(out.parent / "defense_result.pt", weights_only=True)
    assert set(defense) == {"model_name", "num_classes", "model"}
    batch = torch.rand(2, 3, 32, 32)
    (out.parent / "record").mkdir()
    reloaded = open_checkpoint(out)[1].model
    assert torch.equal(loaded.model(batch), reloaded(batch))


def test_without_record_images_there_is_no_stored_trigger(tmp_path):
    _, loaded = open_checkpoint(make_record(tmp_path, with_images=False, prefix=""))
    assert loaded.triggered is None


def test_unknown_dataset_is_a_clear_error(tmp_path):
    from purify_backdoor.errors import PurifyError

    with pytest.raises(PurifyError, match="unknown BackdoorBench data set 'svhn'"):
        open_checkpoint(make_record(tmp_path, dataset="svhn"))


def test_eval_uses_the_stored_poisoned_test_set(tmp_path, tiny_data):
    result = CliRunner().invoke(
        cli, ["eval", str(make_record(tmp_path)), "--data", str(tiny_data), "-q",
              "--json", str(tmp_path / "m.json")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert "asr" in metrics and "robust_acc" in metrics


def test_purify_writes_both_files_and_refuses_to_clobber(tmp_path, tiny_data):
    path = make_record(tmp_path)
    args = ["--plugin", "finetune", str(path), "--data", str(tiny_data), "-o", "epochs=1",
            "--ratio", "0.5", "-q"]  # fmt: skip
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert (path.parent / "attack_result.purified.pt").is_file()
    assert (path.parent / "defense_result.pt").is_file()
    (path.parent / "attack_result.purified.pt").unlink()
    (path.parent / "attack_result.purified.pt.report.json").unlink()
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "defense_result.pt already exists" in result.stderr
