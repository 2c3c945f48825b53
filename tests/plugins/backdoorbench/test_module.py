"""`python -m purify_backdoor.backdoorbench` on a record as BackdoorBench writes it (numpy-1
pickles, tests/adapters' make_record), run from the checkout that holds record/ and config/."""

from __future__ import annotations

import csv

import pytest

from purify_backdoor.backdoorbench.__main__ import main
from purify_backdoor.checkpoint_source import CheckpointSource

from ...adapters.numpy1_pickle import pickle_globals
from ...adapters.test_backdoorbench import make_record, small_preactresnet  # noqa: F401

RUNS = (("finetune", ["--epochs", "1"]), ("clp", ["-o", "u=0"]))


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A BackdoorBench checkout: record/badnet_0_1/ and a yaml config for finetune."""
    make_record(tmp_path, attack="badnet_0_1")
    config = tmp_path / "config" / "defense" / "finetune"
    config.mkdir(parents=True)
    (config / "cifar10.yaml").write_text("device: 'cuda'\nratio: 0.5\nrandom_seed: 1\nindex:\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(defense, options, data, *extra):
    argv = ["--result_file", "badnet_0_1", "--defense", defense, "--data", str(data)]
    return main([*argv, "--accept_low_accuracy", "--device", "cpu", *options, *extra])


def test_two_defenses_write_their_own_backdoorbench_folders(checkout, tiny_data, capsys):
    record = checkout / "record" / "badnet_0_1"
    for defense, options in RUNS:
        assert run(defense, options, tiny_data) == 0, capsys.readouterr()
    assert sorted(p.name for p in (record / "defense").iterdir()) == [
        "purify-clp",
        "purify-finetune",
    ]
    for defense, _ in RUNS:
        folder = record / "defense" / f"purify-{defense}"
        result = CheckpointSource(folder / "defense_result.pt").payload()
        assert set(result) == {"model_name", "num_classes", "model"}
        with (folder / f"purify-{defense}_df_summary.csv").open() as handle:
            (row,) = csv.DictReader(handle)
        assert {"test_acc", "test_asr", "test_ra"} <= row.keys()
        assert all(0.0 <= float(row[k]) <= 1.0 for k in ("test_acc", "test_asr", "test_ra"))
        assert (folder / "log" / "index.txt").is_file()
        purified = record / f"attack_result.purify-{defense}.pt"
        for written in (purified, folder / "defense_result.pt"):
            names = pickle_globals(written)
            assert not any(name.startswith("numpy._core") for name in names), names
        assert "numpy.core.multiarray _reconstruct" in pickle_globals(purified)
    # the yaml's ratio 0.5 of the 200 train images; clp is data-free but draws as ft does
    index = (record / "defense" / "purify-finetune" / "log" / "index.txt").read_text().split()
    assert len(index) == 100


def test_a_rerun_refuses_to_overwrite_without_overwrite(checkout, tiny_data, capsys):
    defense, options = RUNS[1]
    assert run(defense, options, tiny_data) == 0
    capsys.readouterr()
    assert run(defense, options, tiny_data) == 2
    error = capsys.readouterr().err
    assert "already exists" in error and "--overwrite" in error
    assert run(defense, options, tiny_data, "--overwrite") == 0


def test_without_data_it_says_where_to_put_it(checkout, capsys):
    assert main(["--result_file", "badnet_0_1", "--defense", "clp"]) == 2
    assert "pass --data PATH" in capsys.readouterr().err


def test_a_missing_record_is_one_line(checkout, capsys):
    assert main(["--result_file", "nothing", "--defense", "clp"]) == 2
    assert "record/nothing/attack_result.pt does not exist" in capsys.readouterr().err
