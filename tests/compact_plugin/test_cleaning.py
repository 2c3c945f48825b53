"""The whole Clean & Compact defense on a tiny model, data-free, and its two output files."""

from __future__ import annotations

import json

import pytest
import torch

from purify_backdoor.checkpoints import open_checkpoint
from purify_backdoor.compact.cleaning import decompose_and_clip, dense_equivalent
from purify_backdoor.compact.ranks import choose_ranks
from tests.conftest import tiny_wideresnet
from tests.plugins.test_cli import invoke


def test_no_clipping_no_pruning_keeps_the_function():
    model, reference = tiny_wideresnet(), tiny_wideresnet()
    decompose_and_clip(model, tau_scale=1e6, ranks={})
    images = torch.rand(4, 3, 16, 16)
    assert torch.allclose(model(images), reference(images), atol=1e-4)


def test_dense_equivalent_computes_the_same_function():
    model = tiny_wideresnet()
    decompose_and_clip(model, tau_scale=2.0, ranks=choose_ranks(model, 2.0))
    dense = dense_equivalent(model)
    assert dense.state_dict().keys() == tiny_wideresnet().state_dict().keys()
    images = torch.rand(4, 3, 16, 16)
    assert torch.allclose(dense(images), model(images), atol=1e-4)


def test_cc_runs_without_data_and_writes_both_models(nad_checkpoint):
    result = invoke(
        "--plugin", "cc", nad_checkpoint, "-q", "-o", "synthetic=32",
        "-o", "synthesis_iterations=3", "-o", "epochs=1", "-o", "compression=2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    native = nad_checkpoint.with_name("model.purified.pth.tar")
    compact = nad_checkpoint.with_name("model.purified.compact.pt")
    report = json.loads(native.with_name(native.name + ".report.json").read_text())
    assert report["extra_outputs"][0]["path"] == str(compact)
    cost = report["details"]["cc"]["cost"]
    assert cost["before"]["parameters"] / cost["after"]["parameters"] >= 2
    assert cost["after"]["flops"] < cost["before"]["flops"]

    _, dense = open_checkpoint(native)
    adapter, small = open_checkpoint(compact)
    assert adapter.name == "compact"
    assert sum(p.numel() for p in small.model.parameters()) == cost["after"]["parameters"]
    images = torch.rand(4, 3, 32, 32)
    assert torch.allclose(small.model(images), dense.model(images), atol=1e-4)


class Interrupt(Exception):
    pass


def test_interrupted_fine_tuning_resumes_to_the_same_weights(tmp_path):
    from purify_backdoor.compact.cleaning import CleanCompactSettings, finetune_on_synthetic
    from purify_backdoor.plugin_types import RunContext

    images, labels = torch.rand(64, 3, 16, 16), torch.randint(0, 10, (64,))
    settings = CleanCompactSettings(epochs=3, batch_size=32)
    cpu = torch.device("cpu")
    whole = tiny_wideresnet()
    finetune_on_synthetic(whole, images, labels, settings, RunContext(cpu, 2))

    hooked, calls = tiny_wideresnet(), {"n": 0}

    def interrupt(module, inputs):
        calls["n"] += 1
        if calls["n"] == 4:  # 2 steps per epoch: the second step of epoch 2
            raise Interrupt

    handle = hooked.register_forward_pre_hook(interrupt)
    with pytest.raises(Interrupt):
        finetune_on_synthetic(
            hooked, images, labels, settings, RunContext(cpu, 2, workdir=tmp_path)
        )
    handle.remove()
    resumed = tiny_wideresnet(seed=5)
    context = RunContext(cpu, 2, workdir=tmp_path, resume=True)
    finetune_on_synthetic(resumed, images, labels, settings, context)
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_network_fit_target_stays_closer_to_the_original():
    from purify_backdoor.compact.cleaning import CleanCompactSettings, clean_and_compact
    from purify_backdoor.plugin_types import RunContext

    torch.manual_seed(0)
    model = tiny_wideresnet().eval()
    images = torch.rand(64, 3, 16, 16)
    context = RunContext(torch.device("cpu"), 0, quiet=True)
    errors = {}
    for target in ("layer", "network"):
        settings = CleanCompactSettings(
            tau_scale=1e6, synthetic=64, synthesis_iterations=5, bases="activations",
            fit_target=target, epochs=0,
        )  # fmt: skip
        compact, _ = clean_and_compact(model, (16, 16), 10, settings, context)
        with torch.no_grad():
            errors[target] = (compact(images) - model(images)).square().mean().item()
    assert errors["network"] < errors["layer"]


def synthetic_images_of(model, settings, monkeypatch) -> list[torch.Tensor]:
    from purify_backdoor.compact import cleaning
    from purify_backdoor.plugin_types import RunContext

    made = []

    def recording(*args, **kwargs):
        result = synthesize(*args, **kwargs)
        made.append(result[0])
        return result

    synthesize = cleaning.synthesize
    monkeypatch.setattr(cleaning, "synthesize", recording)
    context = RunContext(torch.device("cpu"), 0, quiet=True)
    cleaning.clean_and_compact(model, (16, 16), 10, settings, context)
    monkeypatch.setattr(cleaning, "synthesize", synthesize)
    return made


def test_synthesis_runs_through_the_compact_model(monkeypatch):
    """Same original model and seed, two clipping strengths: the synthetic images differ when
    they are optimised through the compact model, and not when through the original."""
    from purify_backdoor.compact.cleaning import CleanCompactSettings

    model = tiny_wideresnet().eval()
    images = {}
    for through in ("compact", "original"):
        for tau in (1e6, 1.0):
            settings = CleanCompactSettings(
                tau_scale=tau, synthesis_model=through, synthetic=16, synthesis_iterations=3,
                epochs=1, batch_size=16, adversarial_steps=1,
            )  # fmt: skip
            (images[through, tau],) = synthetic_images_of(model, settings, monkeypatch)
    assert not torch.allclose(images["compact", 1e6], images["compact", 1.0])
    assert torch.equal(images["original", 1e6], images["original", 1.0])


def test_default_pipeline_reports_clipping_and_where_adversarial_copies_land():
    from purify_backdoor.compact.cleaning import CleanCompactSettings, clean_and_compact
    from purify_backdoor.compact.tucker import TuckerConv2d
    from purify_backdoor.plugin_types import RunContext

    model = tiny_wideresnet().eval()
    settings = CleanCompactSettings(
        tau_scale=1.2, synthetic=32, synthesis_iterations=2, epochs=1, batch_size=16,
        adversarial_steps=1,
    )  # fmt: skip
    context = RunContext(torch.device("cpu"), 0, quiet=True)
    compact, details = clean_and_compact(model, (16, 16), 10, settings, context)
    assert any(isinstance(m, TuckerConv2d) for m in compact.modules())  # truncated, not fitted
    assert (
        details["clipped"]["mode1"]
        == sum(layer["clipped"]["mode1"] for layer in details["layers"].values())
        > 0
    )
    landed = details["adversarial_label_counts"]
    assert sum(landed["compact"]) == sum(landed["original"]) == 32
    assert sum(details["synthetic_label_counts"]) == 32


def test_soft_labels_are_the_labelling_model_softmax():
    from purify_backdoor.compact.cleaning import fine_tuning_targets

    model = tiny_wideresnet().eval()
    images, sampled = torch.rand(8, 3, 16, 16), torch.randint(0, 10, (8,))
    cpu = torch.device("cpu")
    soft = fine_tuning_targets(sampled, model, images, 10, True, cpu)
    hard = fine_tuning_targets(sampled, model, images, 10, False, cpu)
    assert torch.allclose(soft, model(images).softmax(1).detach(), atol=1e-6)
    assert torch.equal(hard.argmax(1), soft.argmax(1)) and torch.equal(hard.sum(1), torch.ones(8))
    assert torch.equal(
        fine_tuning_targets(sampled, None, images, 10, False, cpu).argmax(1), sampled
    )


def test_the_terminal_line_names_the_layers_where_clipping_acted():
    from purify_backdoor.compact.cleaning import where_clipped

    layers = {
        "conv1": {"clipped": {"mode1": 0, "mode2": 0}},
        "block1.conv2": {"clipped": {"mode1": 2, "mode2": 1}},
        "block2.conv1": {"clipped": {"mode1": 1, "mode2": 0}},
    }
    line = where_clipped(layers)
    assert "4 rank components in 2 of 3" in line and line.index("block1.conv2 3") < line.index(
        "block2.conv1 1"
    )
    none = {"conv1": {"clipped": {"mode1": 0, "mode2": 0}}}
    assert "nothing was clipped" in where_clipped(none)
