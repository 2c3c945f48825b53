"""The work folder beside an output (issue #45, items 2 and 7): `--resume` continues only the run
that folder was started by (same input, defense, options, data, seed and code), and one run at a
time holds it; a zoo or bench job, whose --resume is its driver's, starts afresh instead."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from purify_backdoor.work_folder import JOB_ENV, LOCK, RECORD
from tests.conftest import tiny_wideresnet
from tests.plugins.test_interruption import EPOCHS, interrupt_after_first_epoch, purify

PLUGIN = "finetune"


def model_file(folder: Path, seed: int) -> Path:
    path = folder / f"model{seed}.pth.tar"
    torch.save({"epoch": 1, "state_dict": tiny_wideresnet(seed).state_dict()}, path)
    return path


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def killed_run_on(model: Path, data: Path, out: Path) -> Path:
    """A run on `model` killed outright after its first epoch; returns its work folder."""
    workdir = out.with_name(out.name + ".work")
    state = workdir / f"{PLUGIN}.state.pt"
    code, stderr = interrupt_after_first_epoch(
        purify(model, data, PLUGIN, out), state, signal.SIGKILL
    )
    assert code == -signal.SIGKILL, stderr
    return workdir


def files_under(folder: Path) -> dict[str, int]:
    """Every file and its time, but the lock files: a run takes a free lock by writing its pid."""
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns
        for p in folder.rglob("*")
        if p.name != LOCK
    }


def test_resume_on_another_model_refuses(tmp_path, tiny_data):
    """Item 2: model A's state never becomes model B's purification."""
    a, b = model_file(tmp_path, 0), model_file(tmp_path, 1)
    out = tmp_path / "out.pth.tar"
    workdir = killed_run_on(a, tiny_data, out)
    before = files_under(tmp_path)

    resumed = subprocess.run(
        purify(b, tiny_data, PLUGIN, out, "--resume"), capture_output=True, text=True
    )
    assert resumed.returncode == 2, resumed.stderr
    lines = resumed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --resume"), resumed.stderr
    assert "input_sha256" in lines[0] and "delete that folder" in lines[0]
    assert "drop --resume" in lines[0]
    assert files_under(tmp_path) == before  # nothing written, A's state kept as it was
    record = json.loads((workdir / RECORD).read_text())
    assert record["input_sha256"] == hashlib.sha256(a.read_bytes()).hexdigest()
    assert record["options"]["epochs"] == EPOCHS[PLUGIN]


def test_resume_of_a_folder_without_record_refuses(tmp_path, tiny_data):
    """Item 2: a work folder made before records existed cannot say whose state it holds."""
    out = tmp_path / "out.pth.tar"
    workdir = killed_run_on(model_file(tmp_path, 0), tiny_data, out)
    (workdir / RECORD).unlink()
    resumed = subprocess.run(
        purify(model_file(tmp_path, 0), tiny_data, PLUGIN, out, "--resume"),
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 2, resumed.stderr
    assert "no record" in resumed.stderr and "drop --resume" in resumed.stderr
    assert not out.exists()


def test_a_job_resuming_another_model_starts_afresh(tmp_path, tiny_data):
    """Item 2, for zoo and bench jobs (PURIFY_JOB set by their executors): the driver's --resume
    on a stale folder restarts, says so, and ends as an uninterrupted run on B does."""
    a, b = model_file(tmp_path, 0), model_file(tmp_path, 1)
    fresh = tmp_path / "fresh.pth.tar"
    subprocess.run(purify(b, tiny_data, PLUGIN, fresh), check=True)
    out = tmp_path / "out.pth.tar"
    workdir = killed_run_on(a, tiny_data, out)

    job = subprocess.run(
        purify(b, tiny_data, PLUGIN, out, "--resume"),
        capture_output=True,
        text=True,
        env=dict(os.environ, **{JOB_ENV: "1"}),
    )
    assert job.returncode == 0, job.stderr
    assert "holds the state of another run" in job.stderr and "starting afresh" in job.stderr
    assert not workdir.exists()
    expected, got = weights(fresh), weights(out)
    assert all(torch.equal(value, got[key]) for key, value in expected.items())


def test_second_run_on_one_output_is_refused(tmp_path, tiny_data):
    """Item 7: while one run holds the output's work folder, a second is refused in one line
    naming the holder, writes nothing, and the first ends as if alone."""
    model = model_file(tmp_path, 0)
    out = tmp_path / "out.pth.tar"
    workdir = out.with_name(out.name + ".work")
    first = subprocess.Popen(
        purify(model, tiny_data, PLUGIN, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while not (workdir / f"{PLUGIN}.state.pt").exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "no per-epoch state appeared"
            time.sleep(0.01)
        first.send_signal(signal.SIGSTOP)  # held mid-run, its lock with it
        before = files_under(tmp_path)
        second = subprocess.run(
            purify(model, tiny_data, PLUGIN, out), capture_output=True, text=True
        )
        assert files_under(tmp_path) == before
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pid {first.pid}" in lines[0], second.stderr
    assert first.wait(timeout=120) == 0, first.communicate()
    assert out.exists() and not workdir.exists()


def test_a_refused_input_leaves_no_work_folder(tmp_path, tiny_data, low_accuracy_check_on):
    """The folder and its lock are made before the input check: a run that stops before its
    first saved step (here: an untrained model, near chance) takes them away again."""
    out = tmp_path / "out.pth.tar"
    model = model_file(tmp_path, 0)
    bad = subprocess.run(purify(model, tiny_data, PLUGIN, out), capture_output=True, text=True)
    assert bad.returncode == 2 and "chance" in bad.stderr, bad.stderr
    assert not out.with_name(out.name + ".work").exists()


def test_a_lock_left_by_a_killed_run_is_free(tmp_path, tiny_data):
    """Item 7: SIGKILL leaves the lock file with a dead pid in it; the OS dropped the lock."""
    model = model_file(tmp_path, 0)
    out = tmp_path / "out.pth.tar"
    workdir = killed_run_on(model, tiny_data, out)
    assert (workdir / LOCK).read_text().strip().isdigit()
    subprocess.run(purify(model, tiny_data, PLUGIN, out, "--resume"), check=True)
    assert out.exists() and not workdir.exists()


@pytest.mark.parametrize("resume", [False, True])
def test_a_fresh_run_clears_what_another_run_left(tmp_path, tiny_data, resume):
    """Without --resume a run starts afresh, so no leftover of an earlier run (another model's
    cached step) can be taken for this run's by a later --resume."""
    model = model_file(tmp_path, 0)
    out = tmp_path / "out.pth.tar"
    workdir = out.with_name(out.name + ".work")
    workdir.mkdir()
    (workdir / "leftover.pt").write_bytes(b"old")
    extra = ("--resume",) if resume else ()
    run = subprocess.run(
        purify(model, tiny_data, PLUGIN, out, *extra), capture_output=True, text=True
    )
    if resume:  # no record: refused, the leftover kept
        assert run.returncode == 2 and (workdir / "leftover.pt").exists(), run.stderr
    else:
        assert run.returncode == 0 and not workdir.exists(), run.stderr
