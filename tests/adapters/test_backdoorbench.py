"""A tiny BackdoorBench record folder, built the way BackdoorBench writes one: numpy-1 pickles
(`numpy.core.multiarray` names, np.int64 `data_dict` keys, float64 `poison_indicator`), paths as
stored on the attacker's machine, PNGs under `bd_test_dataset/<label>/<index>.png`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from purify_backdoor.checkpoint_source import CheckpointSource
from purify_backdoor.checkpoints import open_checkpoint
from purify_backdoor.cli import cli
from purify_backdoor.errors import PurifyError
from purify_backdoor.models.normalized import Normalized
from purify_backdoor.models.preact_resnet import PreActResNet
from purify_backdoor.models.registry import build_model

from .numpy1_pickle import pickle_globals, save_as_numpy1

GOLDEN = Path(__file__).with_name("data") / "numpy1_bd_test.pt"

POISONED = {3: (0, 7), 5: (0, 2), 9: (0, 4)}  # test index -> (backdoor label, true label)


def make_record(
    root, with_images=True, prefix="module.", dataset="cifar10", stored_at="/home/attacker/bb",
    test_folder="bd_test_dataset", attack="badnet",
):  # fmt: skip
    """record/<attack>/attack_result.pt whose bd_test paths point at another machine."""
    folder = root / "record" / attack
    torch.manual_seed(0)
    state = {prefix + k: v for k, v in PreActResNet((1, 1, 1, 1), 10).state_dict().items()}
    data_dict = {}
    rng = np.random.default_rng(0)
    saved_in = f"{stored_at}/record/{attack}/{test_folder}"
    for index, (bd_label, label) in POISONED.items():
        stored = f"{saved_in}/{label}/{index}.png"
        data_dict[np.int64(index)] = {"path": stored, "other_info": [bd_label, label]}
        if with_images:
            local = folder / test_folder / str(label) / f"{index}.png"
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
                "save_folder_path": saved_in,
                "data_dict": data_dict,
                "save_file_format": ".png",
            },
            "getitem_all": True,
            "getitem_all_switch": False,
            "original_index_array": np.array(sorted(POISONED)),
            "poison_indicator": np.isin(np.arange(10), list(POISONED)).astype(np.float64),
        },
    }
    path = folder / "attack_result.pt"
    save_as_numpy1(record, path)
    return path


def test_the_fixture_carries_the_opcodes_numpy1_writes(tmp_path):
    """The golden file was written under numpy 1.26 (data/write_numpy1_bd_state.py); every global
    it names is what make_record's file names, and no numpy-2 spelling is left."""
    record_globals = pickle_globals(make_record(tmp_path))
    golden = pickle_globals(GOLDEN)
    assert (
        "numpy.core.multiarray scalar" in golden and "numpy.core.multiarray _reconstruct" in golden
    )
    assert golden <= record_globals
    assert not any(name.startswith("numpy._core") for name in record_globals)


def test_real_numpy1_bytes_load_weights_only():
    state = CheckpointSource(GOLDEN).payload()
    keys = list(state["bd_data_container"]["data_dict"])
    assert all(type(key) is np.int64 for key in keys) and keys == [0, 1, 2]
    assert state["poison_indicator"].dtype == np.float64


def test_a_numpy_global_outside_the_allow_list_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "call": np.frombuffer}, path)
    source = CheckpointSource(path)
    assert source.payload() is None and "frombuffer" in source.load_error


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


def test_relative_stored_paths_and_lira_stage_one_folder_are_re_anchored(tmp_path):
    for stored_at, folder in ((".", "bd_test_dataset"), ("/abs", "bd_test_dataset_stage_one")):
        root = tmp_path / folder
        path = make_record(root, stored_at=stored_at, test_folder=folder, attack="lira")
        triggered = open_checkpoint(path)[1].triggered
        assert triggered is not None and triggered.images.labels.tolist() == [7, 2, 4]


def test_round_trip_same_keys_same_outputs(tmp_path):
    path = make_record(tmp_path)
    adapter, loaded = open_checkpoint(path)
    out = tmp_path / "out" / "attack_result.purified.pt"
    out.parent.mkdir()
    adapter.save(loaded, loaded.model, out)
    original = CheckpointSource(path).payload()
    written = CheckpointSource(out).payload()
    assert written.keys() == original.keys()
    assert written["model"].keys() == original["model"].keys()  # module. prefix kept
    batch = torch.rand(2, 3, 32, 32)
    (out.parent / "record").mkdir()
    reloaded = open_checkpoint(out)[1].model
    assert torch.equal(loaded.model(batch), reloaded(batch))


def test_without_record_images_there_is_no_stored_trigger(tmp_path):
    _, loaded = open_checkpoint(make_record(tmp_path, with_images=False, prefix=""))
    assert loaded.triggered is None


def test_unknown_dataset_is_a_clear_error(tmp_path):
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


def test_defense_result_goes_where_backdoorbench_reads_it_one_folder_per_defense(
    tmp_path, tiny_data
):
    path = make_record(tmp_path)
    for plugin in ("finetune", "fineprune"):
        args = ["--plugin", plugin, str(path), "--data", str(tiny_data), "-o", "epochs=1",
                "--ratio", "0.5", "-q", "--accept-low-accuracy", "--no-html",
                "--out", str(path.parent / f"attack_result.{plugin}.pt")]  # fmt: skip
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        # record/<attack>/defense/purify-<defense>/defense_result.pt: save_defense_result's keys
        defense = CheckpointSource(
            path.parent / "defense" / f"purify-{plugin}" / "defense_result.pt"
        ).payload()
        assert set(defense) == {"model_name", "num_classes", "model"}
        written = CheckpointSource(path.parent / f"attack_result.{plugin}.pt").payload()
        assert torch.equal(
            defense["model"]["module.linear.weight"], written["model"]["module.linear.weight"]
        )
    (path.parent / "attack_result.finetune.pt").unlink()
    (path.parent / "attack_result.finetune.pt.report.json").unlink()
    args[1], args[-1] = "finetune", str(path.parent / "attack_result.finetune.pt")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "defense_result.pt already exists" in result.stderr


def test_backdoorbench_vits_are_the_resize_wrapped_network():
    """generate_cls_model wraps torchvision ViTs as nn.Sequential(Resize(224), vit)."""
    import torchvision

    from purify_backdoor.adapters.backdoorbench import _arch

    with torch.device("meta"):
        ours = build_model("resize224-vit_b_32", 10)
        theirs = torchvision.models.vit_b_32(num_classes=10)
    keys = list(ours.state_dict())
    assert keys == ["1." + key for key in theirs.state_dict()]
    assert _arch("vit_b_32", dict.fromkeys(keys)) == "resize224-vit_b_32"
    assert ours(torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 10)


@pytest.mark.parametrize("linked", ["bd_test_dataset/7/3.png", "bd_test_dataset/7"])
def test_symlink_in_backdoorbench_record_folder_is_never_followed(tmp_path, linked):
    """Issue #45 item 5: a poisoned test image, or a folder on the way to one, that is a link
    (out of the record folder, or to /dev/zero) is refused with one line, never read."""
    path = make_record(tmp_path)
    local = path.parent / linked
    elsewhere = tmp_path / "elsewhere" / local.name
    elsewhere.parent.mkdir()
    local.rename(elsewhere)
    local.symlink_to(elsewhere)
    with pytest.raises(PurifyError, match=f"{linked} is a symbolic link to .*elsewhere.*cp -rL"):
        open_checkpoint(path)


def test_a_numpy1_record_is_written_back_with_the_numpy1_names_it_came_with(tmp_path):
    """Issue #47 item 1: re-saved under numpy 2, the golden numpy-1 pickle names exactly the
    globals numpy 1.26 wrote, so BackdoorBench's numpy-1 stack opens it."""
    from purify_backdoor.numpy_pickle import names_numpy1, save_with_numpy1_names

    out = tmp_path / "resaved.pt"
    save_with_numpy1_names(CheckpointSource(GOLDEN).payload(), out)
    assert names_numpy1(GOLDEN) and pickle_globals(out) == pickle_globals(GOLDEN)
    assert CheckpointSource(out).payload()["poison_indicator"].dtype == np.float64


def test_the_record_folder_is_an_input_and_each_defense_has_its_own_outputs(tmp_path, tiny_data):
    """Issue #47 items 2 and 3: `purify --plugin X record/<attack>` opens the folder; the output
    is one purified record per defense, beside `defense/purify-<defense>/`, never in a folder
    BackdoorBench's own defenses write, and named with numpy-1 globals only, as it came."""
    folder = make_record(tmp_path).parent
    for plugin, option in (("finetune", "epochs=1"), ("clp", "u=0")):
        args = ["--plugin", plugin, str(folder), "--data", str(tiny_data), "-o", option,
                "--ratio", "0.5", "-q", "--accept-low-accuracy", "--no-html"]  # fmt: skip
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        purified = folder / f"attack_result.purify-{plugin}.pt"
        defense = folder / "defense" / f"purify-{plugin}" / "defense_result.pt"
        for written in (purified, defense):
            names = pickle_globals(written)
            assert not any(name.startswith("numpy._core") for name in names), names
        assert "numpy.core.multiarray scalar" in pickle_globals(purified)
    assert sorted(p.name for p in (folder / "defense").iterdir()) == [
        "purify-clp",
        "purify-finetune",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "already exists; pass --overwrite" in result.stderr


def test_without_data_the_run_reads_the_data_the_record_names(tmp_path, tiny_data):
    path = make_record(tmp_path)  # its data_path is ./data/cifar10, in the BackdoorBench checkout
    shutil.copytree(tiny_data, tmp_path / "data" / "cifar10")
    args = ["--plugin", "finetune", str(path), "-o", "epochs=1", "--ratio", "0.5",
            "--accept-low-accuracy", "--no-html"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "--data not given: the data the checkpoint names" in result.stderr
    report = json.loads(next(path.parent.glob("*.report.json")).read_text())
    assert report["data"]["path"] == str(tmp_path / "data" / "cifar10")
    assert report["data"]["clean_images"] == 100


def test_data_naming_backdoorbenchs_folder_of_data_sets_reads_the_records_one(tmp_path, tiny_data):
    path = make_record(tmp_path, dataset="cifar10")
    shutil.copytree(tiny_data, tmp_path / "bb_data" / "cifar10")
    args = ["--plugin", "finetune", str(path), "--data", str(tmp_path / "bb_data"),
            "-o", "epochs=1", "--ratio", "0.5", "--accept-low-accuracy", "--no-html"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(next(path.parent.glob("*.report.json")).read_text())
    assert report["data"]["path"] == str(tmp_path / "bb_data" / "cifar10")


def test_defense_name_files_two_runs_of_one_defense_apart(tmp_path, tiny_data):
    path = make_record(tmp_path)
    for name in ("ft-a", "ft-b"):
        args = ["--plugin", "finetune", str(path.parent), "--data", str(tiny_data),
                "-o", "epochs=1", "--ratio", "0.5", "-q", "--accept-low-accuracy", "--no-html",
                "--defense-name", name]  # fmt: skip
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (path.parent / "defense").iterdir()) == [
        "purify-ft-a",
        "purify-ft-b",
    ]
    assert (path.parent / "attack_result.purify-ft-b.pt").is_file()
    bad = CliRunner().invoke(cli, [*args[:-1], "../escape"])
    assert bad.exit_code == 2 and "--defense-name '../escape' must be a plain name" in bad.stderr
