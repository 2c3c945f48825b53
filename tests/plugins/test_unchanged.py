"""A defense that finds nothing to remove never hands the input back as "purified": no output
file unless --write-unchanged, a report that says so, a line on stderr even under --quiet, and
exit status 3, which is neither success nor an error."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from purify_backdoor import DefenseJob, RunContext
from purify_backdoor.cli import cli
from purify_backdoor.errors import PurifyError
from purify_backdoor.purification import UNCHANGED_EXIT
from purify_backdoor.stages import check_unchanged
from tests.conftest import tiny_wideresnet

ATTACK = "badnet:pattern=grid,target=0"


def run_clp(model, data, *extra):
    arguments = ["--plugin", "clp", str(model), "--data", str(data), "--attack", ATTACK]
    return CliRunner().invoke(cli, [*arguments, "-o", "u=1000", "-q", *extra])


def test_nothing_pruned_writes_no_model_and_exits_3(nad_checkpoint, tiny_data):
    result = run_clp(nad_checkpoint, tiny_data)
    assert result.exit_code == UNCHANGED_EXIT == 3, result.output
    assert "clp: nothing pruned" in result.stderr and "no file was written" in result.stderr
    out = nad_checkpoint.with_name("model.purified.pth.tar")
    assert not out.exists()
    report = json.loads(out.with_name(out.name + ".report.json").read_text())
    assert report["status"] == "nothing pruned" and "mean + 1000.0 std" in report["status_reason"]
    assert report["output"] == {
        "path": str(out),
        "format": "nad",
        "written": False,
        "serialization": "current",
    }
    assert report["metrics"]["after"] == report["metrics"]["before"]


def test_write_unchanged_writes_the_input_but_still_exits_3(nad_checkpoint, tiny_data):
    result = run_clp(nad_checkpoint, tiny_data, "--write-unchanged")
    assert result.exit_code == 3 and "written anyway" in result.stderr
    out = nad_checkpoint.with_name("model.purified.pth.tar")
    original = torch.load(nad_checkpoint, weights_only=True)["state_dict"]
    written = torch.load(out, weights_only=True)["state_dict"]
    assert all(torch.equal(original[key], value) for key, value in written.items())


def test_a_defense_that_prunes_exits_0(nad_checkpoint, tiny_data):
    arguments = ["--plugin", "clp", str(nad_checkpoint), "--data", str(tiny_data)]
    result = CliRunner().invoke(cli, [*arguments, "-o", "u=0", "-q"])
    assert result.exit_code == 0 and result.stderr == ""
    report = json.loads(nad_checkpoint.with_name("model.purified.pth.tar.report.json").read_text())
    assert report["status"] == "purified" and report["status_reason"] is None


def test_saying_unchanged_after_changing_the_model_is_a_plugin_bug():
    original = tiny_wideresnet()
    changed = tiny_wideresnet()
    with torch.no_grad():
        changed.fc.bias += 1
    check_unchanged(original, tiny_wideresnet(), "ok")
    with pytest.raises(PurifyError, match="said it left the model unchanged but changed fc.bias"):
        check_unchanged(original, changed, "liar")


def test_the_job_records_what_the_defense_said():
    job = DefenseJob(tiny_wideresnet(), None, 10, {}, RunContext(torch.device("cpu"), 0))
    assert job.unchanged is None
    job.leave_unchanged("no trigger found", "no label stood out")
    assert job.unchanged == ("no trigger found", "no label stood out")
