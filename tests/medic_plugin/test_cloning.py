"""MEDIC end to end on a tiny model: the teacher is untouched, the clone is fresh, resume works."""

import pytest
import torch
import torchvision

from purify_backdoor.data.synthetic import synthetic_images
from purify_backdoor.medic import run
from purify_backdoor.medic.cloning import MedicSettings
from purify_backdoor.models.airbench import AirbenchNet
from purify_backdoor.plugin_types import DefenseJob, RunContext
from tests.conftest import tiny_wideresnet

CLEAN = synthetic_images(64, 16, seed=0)


def job(context, **options):
    settings = vars(MedicSettings(epochs=2, batch_size=32)) | options
    return DefenseJob(tiny_wideresnet(), CLEAN, 10, settings, context)


@pytest.mark.parametrize("importance", ["reference", "paper", "none"])
def test_teacher_is_never_modified(importance):
    context = RunContext(torch.device("cpu"), seed=0, quiet=True)
    medic_job = job(context, importance=importance)
    teacher = medic_job.model
    before = {key: value.clone() for key, value in teacher.state_dict().items()}
    clone = run(medic_job)
    assert clone is not teacher
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.requires_grad for p in teacher.parameters())
    assert not teacher._forward_hooks and not any(m._forward_hooks for m in teacher.modules())
    history = medic_job.details["medic"]["history"]
    assert len(history) == 2 and all(row["clone_loss"] > 0 for row in history)
    assert len(medic_job.details["medic"]["hooked_layers"]) == 13  # WRN-10-1: 1 + 3 blocks * 4


def test_holdout_accuracy_is_reported():
    context = RunContext(torch.device("cpu"), seed=0, quiet=True)
    medic_job = job(context, holdout=0.25, epochs=1)
    run(medic_job)
    assert 0 <= medic_job.details["medic"]["history"][0]["held_out_acc"] <= 1


class Interrupt(Exception):
    pass


def test_resume_reaches_the_uninterrupted_result(tmp_path):
    whole = run(job(RunContext(torch.device("cpu"), seed=3, quiet=True)))
    workdir = tmp_path / "work"
    workdir.mkdir()
    interrupted = job(RunContext(torch.device("cpu"), seed=3, quiet=True, workdir=workdir))
    calls = {"n": 0}

    def stop_in_epoch_two(module, inputs):
        calls["n"] += 1
        if calls["n"] == 2 + 3:  # 2 statistics batches, 2 steps of epoch 1, then epoch 2
            raise Interrupt

    interrupted.model.conv1.register_forward_pre_hook(stop_in_epoch_two)
    with pytest.raises(Interrupt):
        run(interrupted)
    resumed_context = RunContext(torch.device("cpu"), seed=3, quiet=True, workdir=workdir)
    resumed_context.resume = True
    resumed = run(job(resumed_context))
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def tiny_vit():
    return torchvision.models.VisionTransformer(16, 4, 2, 2, 16, 32, num_classes=10).eval()


def tiny_convnext():
    config = torchvision.models.convnext.CNBlockConfig
    return torchvision.models.ConvNeXt([config(8, 16, 1), config(16, None, 1)], num_classes=10)


@pytest.mark.parametrize("hook_layers", ["conv+bn", "conv+bn+fc"])
@pytest.mark.parametrize("build", [tiny_vit, tiny_convnext])
def test_vit_and_convnext_clone_end_to_end(build, hook_layers):
    torch.manual_seed(0)
    context = RunContext(torch.device("cpu"), seed=0, quiet=True)
    settings = vars(MedicSettings(epochs=1, batch_size=32, hook_layers=hook_layers))
    medic_job = DefenseJob(build().eval(), CLEAN, 10, settings, context)
    clone = run(medic_job)
    assert clone(torch.rand(2, 3, 16, 16)).shape == (2, 10)
    hooked = medic_job.details["medic"]["hooked_layers"]
    history = medic_job.details["medic"]["history"]
    assert history[0]["clone_loss"] > 0 and torch.isfinite(torch.tensor(history[0]["ce"]))
    linears = [name for name in hooked if "mlp" in name or "head" in name or "block.3" in name]
    assert bool(linears) == (hook_layers == "conv+bn+fc")
    assert not any(name.endswith("out_proj") for name in hooked)  # never called by its parent


def test_airbench94_clones_every_conv_and_norm():
    """conv -> max-pool -> BN blocks: every conv and BN is hooked once, none skipped."""
    context = RunContext(torch.device("cpu"), seed=0, quiet=True)
    teacher = AirbenchNet(num_classes=10).eval()
    medic_job = DefenseJob(
        teacher, CLEAN, 10, vars(MedicSettings(epochs=1, batch_size=32)), context
    )
    clone = run(medic_job)
    assert clone(torch.rand(2, 3, 16, 16)).shape == (2, 10)
    hooked = medic_job.details["medic"]["hooked_layers"]
    assert len(hooked) == 14  # the stem's conv and BN, and each block's two of each
    assert "block3.2" in hooked
