import json

import torch
from click.testing import CliRunner

from purify_backdoor.builtin.demo import run_demo
from purify_backdoor.cli import cli
from purify_backdoor.plugin_types import RunContext


def test_demo_runs_the_real_pipeline_and_leaves_its_files(tmp_path):
    context = RunContext(torch.device("cpu"), seed=0, quiet=True)
    report = run_demo(  # two epochs do not train the model: it scores near chance
        context, "finetune", tmp_path, train_images=400, epochs=2, image_size=16,
        accept_low_accuracy=True,
    )  # fmt: skip
    before, after = report["metrics"]["before"], report["metrics"]["after"]
    assert {"clean_acc", "asr", "robust_acc"} <= before.keys()
    assert "agreement" in after and 0 <= after["asr"] <= 1
    # what `purify attack` and `purify --plugin` write: the model with its attack spec, the
    # purified drop-in beside it (never over it) and the report, which found the attack itself
    assert report["input"]["format"] == "nad"
    assert report["attack"]["name"] == "badnet"
    assert (tmp_path / "backdoored.pth.tar").is_file()
    assert (tmp_path / "backdoored.purified.pth.tar").is_file()
    saved = json.loads((tmp_path / "backdoored.purified.pth.tar.report.json").read_text())
    assert saved["metrics"] == report["metrics"]
    assert report["data"]["clean_images"] == 40


def test_demo_refuses_an_existing_folder(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path), "-q"])
    assert result.exit_code == 2 and "already exists" in result.output


def test_demo_is_a_registered_command():
    result = CliRunner().invoke(cli, ["demo", "--help"])
    assert result.exit_code == 0 and "no download" in result.output


def test_demo_defaults_to_medic():
    result = CliRunner().invoke(cli, ["demo", "--help"])
    assert "[default: medic]" in result.output
