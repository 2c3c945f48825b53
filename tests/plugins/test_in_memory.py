"""`defend()`: every shipped defense on a model and numpy arrays in memory, the caller's model left
bit-identical, and the same purified weights and metrics as `purify run` on the same inputs."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from purify_backdoor import Purified, PurifyError, defend
from purify_backdoor.data.synthetic import synthetic_images
from purify_backdoor.models.normalized import Normalized
from purify_backdoor.models.wideresnet import WideResNet
from tests.conftest import tiny_wideresnet
from tests.plugins.test_cli import invoke
from tests.plugins.test_report_html import TINY

ATTACK = "badnet:pattern=grid,target=5"
EXAMPLE = re.compile(r"<!-- example: defend -->\n```python\n(.*?)```", re.DOTALL)


def tiny_options(defense: str) -> dict[str, str]:
    """The report test's tiny settings of each defense, as a dict."""
    flags = TINY[defense]
    return dict(flags[i + 1].split("=", 1) for i in range(0, len(flags), 2))


@pytest.fixture(scope="module")
def arrays():
    clean, test = synthetic_images(120, 16, seed=0), synthetic_images(60, 16, seed=1)
    return clean, test


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    first, second = a.state_dict(), b.state_dict()
    return first.keys() == second.keys() and all(
        torch.equal(first[key], second[key]) for key in first
    )


@pytest.mark.parametrize("defense", sorted(TINY))
def test_every_defense_runs_in_memory_and_leaves_the_callers_model_alone(defense, arrays):
    clean, test = arrays
    model = tiny_wideresnet()
    kept = copy.deepcopy(model)
    result = defend(
        model, clean.images, clean.labels, defense, tiny_options(defense),
        attack=ATTACK, test=(test.images, test.labels), accept_low_accuracy=True,
    )  # fmt: skip
    assert isinstance(result, Purified)
    assert same_weights(model, kept)
    assert result.model is not model
    assert result.status in {"purified", "unchanged", "broken"}
    assert set(result.metrics) >= {"before", "after"} and "asr" in result.metrics["after"]
    assert result.report["plugin"]["name"] == defense
    assert result.report["input"]["format"] == "in-memory"
    assert result.report["data"]["clean_images"] == len(clean)
    with torch.no_grad():
        assert result.model(torch.zeros(2, 3, 16, 16)).shape == (2, 10)


def as_npz(path, clean, test):
    np.savez(path, x=clean.images, y=clean.labels, x_test=test.images, y_test=test.labels)
    return path


@pytest.mark.parametrize("defense", ["finetune", "medic", "clp"])
def test_the_same_result_as_purify_run(defense, arrays, tmp_path):
    clean, test = arrays
    model = tiny_wideresnet()
    checkpoint = tmp_path / "model.pth.tar"
    torch.save({"epoch": 0, "state_dict": model.state_dict()}, checkpoint)
    data = as_npz(tmp_path / "data.npz", clean, test)
    flags = TINY[defense]
    result = invoke(
        "--plugin", defense, checkpoint, "--data", data, "--ratio", "1", "--attack", ATTACK,
        "--seed", "3", "-q", "--no-html", *flags,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    written = torch.load(tmp_path / "model.purified.pth.tar", weights_only=True)["state_dict"]
    report = json.loads((tmp_path / "model.purified.pth.tar.report.json").read_text())

    purified = defend(
        model, clean.images, clean.labels, defense, tiny_options(defense), seed=3,
        attack=ATTACK, test=(test.images, test.labels), accept_low_accuracy=True,
    )  # fmt: skip
    mine = purified.model.state_dict()
    assert written.keys() == mine.keys()
    assert all(torch.equal(written[key], mine[key]) for key in written)
    assert purified.metrics == report["metrics"]
    assert purified.report["plugin"] == report["plugin"]
    assert purified.status == report["status"] == "purified"


def test_a_normalizing_model_comes_back_without_purifys_wrapper(arrays):
    clean, _ = arrays
    network = WideResNet(depth=10, widen_factor=1, num_classes=10).eval()
    result = defend(
        network, clean.images, clean.labels, "finetune", {"epochs": 1}, normalize="cifar10",
        accept_low_accuracy=True,
    )  # fmt: skip
    assert type(result.model) is WideResNet and not isinstance(result.model, Normalized)
    assert result.report["input"]["convention"]["mean"] == pytest.approx([0.4914, 0.4822, 0.4465])
    assert result.metrics is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"images": np.zeros((4, 16, 16, 3), np.float32)}, "images must be uint8 RGB"),
        ({"images": np.zeros((4, 3, 16, 16), np.uint8)}, "images must be uint8 RGB"),
        ({"labels": np.zeros(3, np.int64)}, "4 images but labels of shape"),
        ({"labels": np.zeros(4, np.float32)}, "labels must be integers"),
        ({"labels": np.full(4, 12)}, "labels go up to 12 but the model has 10 outputs"),
        ({"defense": "nope"}, "unknown defense 'nope'"),
        ({"options": {"epochs": "many"}}, "epochs"),
        ({"labels": None}, "images need labels"),
    ],
)
def test_bad_input_is_the_clis_one_line_error(change, message):
    arguments = {
        "images": np.zeros((4, 16, 16, 3), np.uint8),
        "labels": np.arange(4),
        "defense": "finetune",
        "options": {"epochs": 1},
    } | change
    with pytest.raises(PurifyError, match=message) as raised:
        defend(tiny_wideresnet(), accept_low_accuracy=True, **arguments)
    assert "\n" not in str(raised.value)


def test_a_model_near_chance_stops_before_any_work(arrays):
    clean, _ = arrays
    with pytest.raises(PurifyError, match="near chance"):
        defend(tiny_wideresnet(), clean.images, clean.labels, "finetune", {"epochs": 1})


def test_the_documented_example_runs(tmp_path):
    guide = (Path(__file__).resolve().parents[2] / "docs" / "writing-plugins.md").read_text()
    example = EXAMPLE.search(guide)
    assert example, "docs/writing-plugins.md lost its `<!-- example: defend -->` block"
    env = dict(os.environ, TMPDIR=str(tmp_path))
    run = subprocess.run(
        [sys.executable, "-c", example.group(1)], capture_output=True, text=True, env=env,
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] in {"purified", "unchanged", "broken"}
    assert [line.split()[0] for line in lines[1:]] == ["before", "after"]
    asr = [float(line.split("ASR ")[1].rstrip("%")) for line in lines[1:]]
    assert asr[0] > 90 and asr[1] < asr[0] / 2  # a real backdoor, and MEDIC removes most of it
    assert (tmp_path / "purified.pt").is_file()
