"""A defense that leaves the model near chance on the user's clean images has not purified it:
the report says "broken" with the measure, no model is written unless --accept-low-accuracy, and
`purify run` exits 4, which the bench and zoo record as a result."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from purify_backdoor import Defense, RunContext
from purify_backdoor.checkpoints import open_checkpoint
from purify_backdoor.cli import cli
from purify_backdoor.data.synthetic import synthetic_images
from purify_backdoor.executors.job import is_result
from purify_backdoor.manager import Registered
from purify_backdoor.purification import BROKEN_EXIT, PurifyRequest, purify_checkpoint
from purify_backdoor.training import predict_logits

pytestmark = pytest.mark.usefixtures("low_accuracy_check_on")


@pytest.fixture
def data_it_gets_right(nad_checkpoint, tmp_path):
    """Images labelled by the input model itself, so it scores 100% on them."""
    _, loaded = open_checkpoint(nad_checkpoint)
    images = synthetic_images(300, 16, seed=0).images
    labels = predict_logits(loaded.model, images, torch.device("cpu")).argmax(1).numpy()
    path = tmp_path / "data.npz"
    classes = np.array([str(k) for k in range(10)])
    np.savez(path, x=images[:200], y=labels[:200], x_test=images[200:], y_test=labels[200:],
             classes=classes)  # fmt: skip
    return path


def shift_every_prediction(job):
    """Class k's logit row moves to k + 1: every prediction is wrong."""
    model = job.model
    with torch.no_grad():
        model.fc.weight.copy_(model.fc.weight.roll(1, 0))
        model.fc.bias.copy_(model.fc.bias.roll(1, 0))
    return model


SHIFT = Registered(
    "defense", Defense("shift", "breaks the model", shift_every_prediction), "t", "0"
)


def purify(checkpoint, data, accept_low=False):
    request = PurifyRequest(checkpoint, "shift", {}, data=data, html=False,
                            accept_low_accuracy=accept_low)  # fmt: skip
    return purify_checkpoint(request, RunContext(torch.device("cpu"), 0, quiet=True), SHIFT)


def test_a_model_left_near_chance_is_reported_broken_and_not_written(
    nad_checkpoint, data_it_gets_right
):
    report = purify(nad_checkpoint, data_it_gets_right)
    out = nad_checkpoint.with_name("model.purified.pth.tar")
    assert report["status"] == "broken" and not out.exists()
    assert "scores 0.0% on 100 of your clean images, near chance (10.0%)" in report["status_reason"]
    assert report["input"]["check"]["clean_acc"] == 1.0
    assert report["output"]["written"] is False and report["output"]["check"]["low"]
    assert report["metrics"]["after"]["clean_acc"] == 0.0
    assert json.loads(out.with_name(out.name + ".report.json").read_text())["status"] == "broken"


def test_accept_low_accuracy_writes_it(nad_checkpoint, data_it_gets_right):
    report = purify(nad_checkpoint, data_it_gets_right, accept_low=True)
    assert report["status"] == "purified" and report["output"]["written"]
    assert nad_checkpoint.with_name("model.purified.pth.tar").exists()


def test_the_cli_says_so_in_one_line_and_exits_4(nad_checkpoint, data_it_gets_right):
    args = ["--plugin", "clp", str(nad_checkpoint), "--data", str(data_it_gets_right),
            "-o", "u=-100", "-q", "--no-html"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == BROKEN_EXIT, result.output
    assert result.stderr.count("\n") == 1 and "near chance (10.0%), so no file was written" in (
        result.stderr
    )
    assert "--accept-low-accuracy" in result.stderr
    assert not nad_checkpoint.with_name("model.purified.pth.tar").exists()


def test_the_broken_exit_is_a_result_for_the_bench_and_zoo():
    assert BROKEN_EXIT == 4 and is_result(BROKEN_EXIT) and not is_result(2)
