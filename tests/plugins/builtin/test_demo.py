import torch
from click.testing import CliRunner

from plugins.builtin.demo import run_demo
from plugins.cli import cli
from plugins.plugin_types import RunContext


def test_demo_trains_a_backdoor_and_reports_before_and_after():
    context = RunContext(torch.device("cpu"), seed=0, quiet=True)
    columns = run_demo(context, "finetune", train_images=400, epochs=2, image_size=16)
    before, after = columns["backdoored"], columns["purified (finetune)"]
    assert {"clean_acc", "asr", "robust_acc"} <= before.keys()
    assert "agreement" in after and 0 <= after["asr"] <= 1


def test_demo_is_a_registered_command():
    result = CliRunner().invoke(cli, ["demo", "--help"])
    assert result.exit_code == 0 and "no download" in result.output


def test_demo_defaults_to_medic():
    result = CliRunner().invoke(cli, ["demo", "--help"])
    assert "[default: medic]" in result.output
