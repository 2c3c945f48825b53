"""Each write of a run made to fail in turn (the per-epoch state, the model, its companion, the
report, the HTML page), as a full disk would: the run stops with one line, the output folder
holds nothing new, and the same command with --resume then writes the complete set. A full disk
is named as such, with the folder and the space needed (issue #45, item 4)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from click.testing import CliRunner

import purify_backdoor.adapters.backdoorbench as backdoorbench
import purify_backdoor.training as training
from purify_backdoor.cli import cli
from purify_backdoor.staged_outputs import StagedOutputs
from tests.adapters.test_backdoorbench import make_record, small_preactresnet  # noqa: F401

FULL = OSError(errno.ENOSPC, "No space left on device")


def fail(*args, **kwargs):
    raise FULL


def torch_short_write(*args, **kwargs):
    """What torch.save raises when the disk fills: no errno, an obscure message."""
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")


def failing_write_of(suffix: str):
    """StagedOutputs.stage, failing for the output whose name ends with `suffix`."""
    real = StagedOutputs.stage

    def stage(self, target, write):
        return real(self, target, fail if target.name.endswith(suffix) else write)

    return stage


FAULTS = {
    "state": (training.EpochCheckpoint, "save", fail),
    "model": (backdoorbench, "save", fail),
    "companion": (backdoorbench, "save_defense_result", fail),
    "report": (StagedOutputs, "stage", failing_write_of(".report.json")),
    "html": (StagedOutputs, "stage", failing_write_of(".report.html")),
}
COMPLETE = {
    "attack_result.purify-finetune.pt",
    "attack_result.purify-finetune.pt.report.json",
    "attack_result.purify-finetune.pt.report.html",
    "defense/purify-finetune/defense_result.pt",
}


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def outputs(folder: Path, before: set[str]) -> set[str]:
    """What a run added, its work folder aside (kept on purpose: it is what --resume reads)."""
    return {name for name in files(folder) - before if ".work" not in name}


def run(record: Path, data: Path, *extra: str):
    arguments = ["--plugin", "finetune", str(record), "--data", str(data), "-o", "epochs=2",
                 "--ratio", "0.5", "-q", "--accept-low-accuracy", *extra]  # fmt: skip
    return CliRunner().invoke(cli, arguments)


@pytest.mark.parametrize("where", sorted(FAULTS))
def test_a_failed_write_leaves_nothing_and_resume_completes(
    where, tmp_path, tiny_data, monkeypatch
):
    record = make_record(tmp_path)
    before = files(record.parent)
    owner, name, replacement = FAULTS[where]
    with monkeypatch.context() as patch:
        patch.setattr(owner, name, replacement)
        patch.setattr("purify_backdoor.disk_space.free_bytes", lambda folder: 1000)
        failed = run(record, tiny_data)
    assert failed.exit_code == 2, failed.output
    lines = [line for line in failed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "out of disk space in" in lines[0] and "--resume" in lines[0]
    assert outputs(record.parent, before) == set()
    resumed = run(record, tiny_data, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert outputs(record.parent, before) == COMPLETE


def test_torch_short_write_on_a_full_disk_is_named(tmp_path, tiny_data, monkeypatch):
    record = make_record(tmp_path)
    monkeypatch.setattr(backdoorbench, "save", torch_short_write)
    monkeypatch.setattr("purify_backdoor.disk_space.free_bytes", lambda folder: 1000)
    result = run(record, tiny_data)
    assert result.exit_code == 2 and "out of disk space in" in result.stderr
    assert "bytes and 1,000 are free" in result.stderr


def test_a_writer_bug_with_room_on_disk_is_not_called_a_full_disk(tmp_path, tiny_data, monkeypatch):
    record = make_record(tmp_path)
    before = files(record.parent)
    monkeypatch.setattr(backdoorbench, "save", torch_short_write)
    result = run(record, tiny_data)
    assert result.exit_code != 0 and "out of disk space" not in result.output
    assert outputs(record.parent, before) == set()
