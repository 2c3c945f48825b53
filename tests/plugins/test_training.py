"""Per-epoch checkpoints: an interrupted, resumed run ends as an uninterrupted one does."""

import pytest
import torch

from purify_backdoor.data.synthetic import synthetic_images
from purify_backdoor.plugin_types import RunContext
from purify_backdoor.training import TrainSettings, fit
from tests.conftest import tiny_wideresnet

SETTINGS = TrainSettings(epochs=2, lr=0.05, batch_size=32)
# The fast profile's recipe: per-step triangular schedule, Nesterov, label smoothing, NHWC.
FAST = TrainSettings(
    epochs=2, lr=0.05, batch_size=32, schedule="onecycle", warmup_epochs=0.5,
    label_smoothing=0.1, nesterov=True, channels_last=True,
)  # fmt: skip


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("settings", [SETTINGS, FAST], ids=["cosine", "fast"])
def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, settings):
    data = synthetic_images(96, 16, seed=0)
    whole = fit(tiny_wideresnet(), data, settings, RunContext(torch.device("cpu"), 7), "t")

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
        fit(model, data, settings, context, "t")
    handle.remove()

    resumed_context = RunContext(torch.device("cpu"), 7, workdir=workdir, resume=True)
    resumed = fit(tiny_wideresnet(seed=99), data, settings, resumed_context, "t")
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


def test_onecycle_rises_over_the_warmup_then_falls_to_zero():
    from purify_backdoor.training import _scheduler

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    settings = TrainSettings(epochs=2, lr=1.0, schedule="onecycle", warmup_epochs=1)
    scheduler = _scheduler(optimizer, settings, steps_per_epoch=4)
    rates = []
    for _ in range(8):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 0.75, 0.5, 0.25])


def test_channels_last_falls_back_for_a_model_that_flattens_with_view():
    class ViewFlatten(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.fc = torch.nn.Linear(4 * 14 * 14, 3)

        def forward(self, x):
            out = self.conv(x)
            return self.fc(out.view(out.shape[0], -1))

    data = synthetic_images(32, 16, seed=0)
    data = type(data)(data.images, data.labels % 3, data.classes[:3])
    model = fit(ViewFlatten(), data, FAST, RunContext(torch.device("cpu"), 0), "t")
    assert model.conv.weight.is_contiguous()
