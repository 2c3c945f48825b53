"""Gradient ascent lowers the target probability on triggered inputs; the penalty is zero at the
original parameters."""

from __future__ import annotations

import copy

import pytest
import torch

from purify_backdoor.plugin_types import RunContext
from purify_backdoor.unlearn.generator import TriggerGenerator, apply_trigger
from purify_backdoor.unlearn.recovery import RecoverySettings, sample_triggers
from purify_backdoor.unlearn.unlearning import (
    UnlearnSettings,
    drift_penalty,
    fisher_diagonal,
    unlearn,
)
from tests.conftest import tiny_wideresnet
from tests.unlearn_plugin.test_recovery import PatchVictim


def test_penalty_is_zero_at_the_original_parameters_and_grows_with_drift():
    model = tiny_wideresnet()
    images, labels = torch.rand(32, 3, 16, 16), torch.randint(0, 10, (32,))
    weights = fisher_diagonal(model, images, labels, torch.device("cpu"))
    assert torch.cat([w.flatten() for w in weights]).max() == 1.0
    original = [p.detach().clone() for p in model.parameters()]
    assert drift_penalty(model, original, weights).item() == 0
    with torch.no_grad():
        model.fc.weight += 0.1
    assert drift_penalty(model, original, weights).item() > 0


def test_gradient_ascent_lowers_the_target_probability_on_triggered_inputs():
    torch.manual_seed(0)
    victim = PatchVictim(strength=12.0).eval()
    white = TriggerGenerator((3, 3, 3), hidden=16, image_size=(16, 16)).eval()
    with torch.no_grad():  # a generator of (almost) white patches: the victim's trigger
        white.out.weight.zero_()
        white.out.bias.fill_(10.0)
    recovery = RecoverySettings(hidden=16)
    images, labels = torch.rand(64, 3, 16, 16) * 0.6, torch.randint(0, 10, (64,))
    held_out = (torch.rand(32, 3, 16, 16) * 0.6, torch.randint(0, 10, (32,)))
    context = RunContext(torch.device("cpu"), seed=0, quiet=True)

    def target_probability(model: torch.nn.Module) -> float:
        generator = torch.Generator().manual_seed(3)
        triggers = sample_triggers(white, 64, generator, context.device)
        stamped = apply_trigger(images, triggers, "patch", 0.0, white.places(64, generator))
        with torch.no_grad():
            return model.eval()(stamped).softmax(1)[:, 5].mean().item()

    settings = UnlearnSettings(alpha=1.0, beta=0.0, steps=30, lr=0.1, batch_size=32,
                               stop_success=-1.0)  # fmt: skip
    purified, history = unlearn(
        victim, {5: [white]}, (images, labels), held_out, recovery, settings, context
    )
    assert target_probability(victim) > 0.9
    assert target_probability(purified) < 0.5
    assert history[0]["recovered_trigger_success"] > 0.9


class Interrupt(Exception):
    pass


def white_patch_case() -> tuple[PatchVictim, tuple]:
    """A victim whose white patch sends images to label 5, and unlearn's pool, clean data,
    held-out data and recovery settings, with a generator of (almost) white patches pooled."""
    torch.manual_seed(0)
    victim = PatchVictim(strength=12.0).eval()
    white = TriggerGenerator((3, 3, 3), hidden=16, image_size=(16, 16)).eval()
    with torch.no_grad():
        white.out.weight.zero_()
        white.out.bias.fill_(10.0)
    images, labels = torch.rand(64, 3, 16, 16) * 0.6, torch.randint(0, 10, (64,))
    held_out = (torch.rand(32, 3, 16, 16) * 0.6, torch.randint(0, 10, (32,)))
    return victim, ({5: [white]}, (images, labels), held_out, RecoverySettings(hidden=16))


def test_interrupted_unlearning_resumes_to_the_same_weights(tmp_path):
    base, data = white_patch_case()
    settings = UnlearnSettings(steps=30, lr=0.005, batch_size=16, stop_success=-1.0, check_every=5)
    cpu = torch.device("cpu")
    whole, history = unlearn(base, *data, settings, RunContext(cpu, 1))

    hooked = copy.deepcopy(base)
    calls = {"n": 0}

    def interrupt(module, inputs):
        calls["n"] += 1
        if calls["n"] == 40:
            raise Interrupt

    hooked.register_forward_pre_hook(interrupt)
    with pytest.raises(Interrupt):
        unlearn(hooked, *data, settings, RunContext(cpu, 1, workdir=tmp_path))
    assert (tmp_path / "baeraser.state.pt").exists()
    resumed, again = unlearn(
        base, *data, settings, RunContext(cpu, 1, workdir=tmp_path, resume=True)
    )
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert again == history


def test_unlearning_goes_on_while_a_trigger_beats_its_forms_typical_label():
    victim, data = white_patch_case()
    settings = UnlearnSettings(steps=20, lr=0.005, batch_size=16, stop_success=1.01, check_every=5)
    context = RunContext(torch.device("cpu"), seed=0, quiet=True)
    _, absolute = unlearn(victim, *data, settings, context)
    _, relative = unlearn(victim, *data, settings, context, typical={"patch": 0.0})
    assert [row["step"] for row in absolute] == [0]
    assert len(relative) > 1
    assert relative[0]["recovered_trigger_success"] > 0
    _, other_form = unlearn(victim, *data, settings, context, typical={"additive": 0.0})
    assert [row["step"] for row in other_form] == [0]
