"""The real backdoored model the MEDIC authors released, on the shared CIFAR-10 JPEG test set."""

import json

import pytest
from click.testing import CliRunner

from purify_backdoor.cli import cli
from tests.conftest import SHARED

CHECKPOINT = SHARED / "checkpoints" / "nad-wrn16-1-badnet.pth.tar"
CIFAR = SHARED / "data" / "cifar10-jpeg.tar.gz"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHECKPOINT.exists(), reason="needs ../shared/ beside the checkout"),
]


def test_eval_reproduces_the_published_numbers(tmp_path):
    out = tmp_path / "metrics.json"
    args = ["eval", CHECKPOINT, "--data", CIFAR, "--attack", "badnet:pattern=grid,target=5"]
    result = CliRunner().invoke(cli, [*map(str, args), "--json", str(out), "-q"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["clean_acc"] == pytest.approx(0.795, abs=0.003)
    assert metrics["asr"] >= 0.999
