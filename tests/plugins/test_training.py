"""Per-epoch checkpoints: an interrupted, resumed run ends as an uninterrupted one does."""

import pytest
import torch

from purify_backdoor.data.synthetic import synthetic_images
from purify_backdoor.plugin_types import RunContext
from purify_backdoor.training import TrainSettings, fit
from tests.conftest import tiny_wideresnet

SETTINGS = TrainSettings(epochs=2, lr=0.05, batch_size=32)


class Interrupt(Exception):
    pass


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    data = synthetic_images(96, 16, seed=0)
    whole = fit(tiny_wideresnet(), data, SETTINGS, RunContext(torch.device("cpu"), 7), "t")

    workdir = tmp_path / "work"
    workdir.mkdir()
    model = tiny_wideresnet()
    calls = {"n": 0}

    def interrupt_in_second_epoch(module, inputs):
        calls["n"] += 1
        if calls["n"] == 5:  # 3 steps per epoch: this is the second step of epoch 2
            raise Interrupt

    handle = model.register_forward_pre_hook(interrupt_in_second_epoch)
    context = RunContext(torch.device("cpu"), 7, workdir=workdir)
    with pytest.raises(Interrupt):
        fit(model, data, SETTINGS, context, "t")
    handle.remove()

    resumed_context = RunContext(torch.device("cpu"), 7, workdir=workdir, resume=True)
    resumed = fit(tiny_wideresnet(seed=99), data, SETTINGS, resumed_context, "t")
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_cached_step_is_read_back_only_under_resume(tmp_path):
    from purify_backdoor.training import cached

    calls = []

    def compute():
        calls.append(1)
        return {"x": torch.arange(3), "score": 0.5}

    first = cached(RunContext(torch.device("cpu"), 0, workdir=tmp_path), "step", compute)
    again = cached(
        RunContext(torch.device("cpu"), 0, workdir=tmp_path, resume=True), "step", compute
    )
    assert len(calls) == 1 and torch.equal(again["x"], first["x"]) and again["score"] == 0.5
    cached(RunContext(torch.device("cpu"), 0, workdir=tmp_path), "step", compute)
    assert len(calls) == 2
