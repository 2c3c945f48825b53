"""A model fed the wrong input convention is stopped before any defense runs, with the fix."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from purify_backdoor.cli import cli
from purify_backdoor.data.imageset import ImageSet
from purify_backdoor.errors import PurifyError
from purify_backdoor.input_check import accuracy_floor, check_clean_accuracy

pytestmark = pytest.mark.usefixtures("low_accuracy_check_on")


class ReadsBlue(nn.Module):
    """Classifies by its first input channel, which it was trained to receive as blue (BGR)."""

    def forward(self, x):
        level = x[:, 0].mean(dim=(1, 2))  # blue = 1 - 0.1 * class
        centres = 1 - 0.1 * torch.arange(10, dtype=x.dtype)
        return -(level[:, None] - centres[None]).abs()


def coloured_images(count=200) -> ImageSet:
    """Class k: red 0.1 k, blue 1 - 0.1 k."""
    labels = np.arange(count) % 10
    images = np.zeros((count, 8, 8, 3), dtype=np.uint8)
    images[..., 0] = (25.5 * labels)[:, None, None].round()
    images[..., 2] = (255 - 25.5 * labels)[:, None, None].round()
    return ImageSet(images, labels.astype(np.int64), tuple(str(k) for k in range(10)))


def test_the_floor_is_a_tenth_of_the_way_from_chance():
    assert accuracy_floor(10) == pytest.approx(0.19)
    assert accuracy_floor(1000) == pytest.approx(0.1009)


def test_wrong_channel_order_is_an_error_naming_the_flags_and_the_right_one_passes():
    from purify_backdoor.models.normalized import Normalized

    images, cpu = coloured_images(), torch.device("cpu")
    with pytest.raises(PurifyError, match=r"near chance.*--bgr.*--accept-low-accuracy"):
        check_clean_accuracy(ReadsBlue(), images, cpu, seed=0)
    record = check_clean_accuracy(ReadsBlue(), images, cpu, seed=0, accept_low=True)
    assert record["low"] and record["accepted_low"] and record["images"] == 200
    fixed = Normalized(ReadsBlue(), (0, 0, 0), (1, 1, 1), bgr=True)
    record = check_clean_accuracy(fixed, images, cpu, seed=0)
    assert record["clean_acc"] == 1.0 and not record["low"]


def test_too_few_images_are_measured_not_judged():
    record = check_clean_accuracy(ReadsBlue(), coloured_images(12), torch.device("cpu"), seed=0)
    assert record["images"] == 12 and not record["low"]


def test_run_stops_before_the_defense_and_the_report_keeps_the_measure(nad_checkpoint, tiny_data):
    args = ["--plugin", "finetune", str(nad_checkpoint), "--data", str(tiny_data),
            "-o", "epochs=1", "--ratio", "0.5", "-q", "--no-html"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "near chance" in result.stderr
    assert not list(nad_checkpoint.parent.glob("*.purified*"))
    assert CliRunner().invoke(cli, [*args, "--accept-low-accuracy"]).exit_code == 0
    report_path = nad_checkpoint.with_name("model.purified.pth.tar.report.json")
    check = json.loads(report_path.read_text())["input"]["check"]
    assert check["images"] == 100 and check["low"] and check["accepted_low"]
