"""A defense killed mid-run (SIGKILL: no clean-up at all; SIGINT: Ctrl-C) leaves no output and
its last per-epoch state; `--resume` then ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_wideresnet

EPOCHS = {"finetune": 12, "medic": 6}


def purify(model: Path, data: Path, plugin: str, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "purify_backdoor", "--plugin", plugin, str(model),
        "--data", str(data),
        "--ratio", "0.5", "-o", f"epochs={EPOCHS[plugin]}", "--seed", "3", "--out", str(out),
        "-q", *extra,
    ]  # fmt: skip


def interrupt_after_first_epoch(command: list[str], state: Path, sent: int) -> tuple[int, str]:
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A shell without job control starts background jobs with SIGINT ignored, and Python then
        # keeps ignoring it; the child gets the default so Ctrl-C is what is tested.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not state.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no per-epoch state appeared"
        time.sleep(0.01)
    process.send_signal(sent)
    _, stderr = process.communicate(timeout=60)
    return process.returncode, stderr


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_data):
    """The reference result of each defense, computed once per module."""
    root = tmp_path_factory.mktemp("uninterrupted")
    model = root / "model.pth.tar"
    torch.save({"epoch": 1, "state_dict": tiny_wideresnet().state_dict()}, model)
    results = {}
    for plugin in EPOCHS:
        out = root / f"{plugin}.pth.tar"
        subprocess.run(purify(model, tiny_data, plugin, out), check=True)
        results[plugin] = torch.load(out, weights_only=True)["state_dict"]
    return model, results


# Ctrl-C handling is the host's, so SIGINT is tried on one defense; SIGKILL on each.
@pytest.mark.parametrize(
    ("plugin", "sent"),
    [("finetune", signal.SIGKILL), ("finetune", signal.SIGINT), ("medic", signal.SIGKILL)],
    ids=["finetune-SIGKILL", "finetune-SIGINT", "medic-SIGKILL"],
)
def test_interrupted_run_resumes_to_the_uninterrupted_result(
    tmp_path, tiny_data, uninterrupted, plugin, sent
):
    model, expected = uninterrupted
    out = tmp_path / "resumed.pth.tar"
    state = out.with_name(out.name + ".work") / f"{plugin}.state.pt"
    code, stderr = interrupt_after_first_epoch(purify(model, tiny_data, plugin, out), state, sent)
    assert code == (-signal.SIGKILL if sent == signal.SIGKILL else 130), stderr
    if sent == signal.SIGINT:
        assert "--resume" in stderr.strip().splitlines()[-1]
    assert not out.exists() and not out.with_name(out.name + ".report.json").exists()
    assert torch.load(state, weights_only=True)["epoch"] < EPOCHS[plugin]

    subprocess.run(purify(model, tiny_data, plugin, out, "--resume"), check=True)
    resumed = torch.load(out, weights_only=True)["state_dict"]
    for key, value in expected[plugin].items():
        assert torch.equal(value, resumed[key]), key
    # Ctrl-C lets the host note the first part's time; SIGKILL leaves no chance to.
    report = json.loads(out.with_name(out.name + ".report.json").read_text())
    parts = report["defense_time_parts_s"]
    assert len(parts) == (2 if sent == signal.SIGINT else 1) and all(p > 0 for p in parts)
    assert report["defense_time_s"] == pytest.approx(sum(parts))
