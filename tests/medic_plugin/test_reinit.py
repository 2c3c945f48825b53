"""The clone starts from scratch on every architecture purify can load: no parameter and no
running statistic of the clone equals the (perturbed) teacher's, through either path."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from purify_backdoor import Normalized, PurifyError, build_model
from purify_backdoor.medic.reinit import fresh_clone
from purify_backdoor.models.registry import _PREACT, _TORCHVISION

ARCHITECTURES = ["wrn16-1", *_PREACT, *_TORCHVISION]


def perturbed(model: nn.Module) -> nn.Module:
    """Every float tensor moved off any value an initialiser could give it."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.add_(torch.rand(tensor.shape, generator=generator) + 0.5)
    return model


def equal_tensors(teacher: nn.Module, clone: nn.Module) -> list[str]:
    clone_state = clone.state_dict()
    return [
        key
        for key, value in teacher.state_dict().items()
        if value.is_floating_point() and torch.equal(value, clone_state[key])
    ]


@pytest.mark.filterwarnings("ignore::FutureWarning")  # googlenet, inception_v3 init notices
@pytest.mark.parametrize("through", ["architecture", "modules"])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_no_tensor_of_the_clone_is_the_teachers(arch, through):
    teacher = perturbed(build_model(arch, 10))
    clone = fresh_clone(teacher, arch if through == "architecture" else None)
    assert clone.state_dict().keys() == teacher.state_dict().keys()
    assert equal_tensors(teacher, clone) == []
    first = next(iter(teacher.parameters()))
    assert all(p.data_ptr() != first.data_ptr() for p in clone.parameters())


def test_the_architecture_path_is_its_own_initialiser():
    teacher = perturbed(build_model("vit_b_16", 10))
    torch.manual_seed(0)
    expected = build_model("vit_b_16", 10).state_dict()
    torch.manual_seed(0)
    clone = fresh_clone(teacher, "vit_b_16").state_dict()
    assert all(torch.equal(clone[key], value) for key, value in expected.items())
    assert torch.count_nonzero(clone["heads.head.weight"]) == 0  # torchvision zero-inits it


def test_a_wrapper_keeps_its_input_normalisation():
    teacher = Normalized(perturbed(build_model("preactresnet18", 10)), (0.5,) * 3, (0.25,) * 3)
    clone = fresh_clone(teacher, "preactresnet18")
    assert torch.equal(clone.mean, teacher.mean) and torch.equal(clone.std, teacher.std)
    assert equal_tensors(teacher.inner, clone.inner) == []


def test_a_mismatched_architecture_name_falls_back_to_the_modules():
    teacher = perturbed(build_model("wrn16-1", 10))
    assert equal_tensors(teacher, fresh_clone(teacher, "resnet18")) == []


def test_a_parameter_nothing_can_reinitialise_is_an_error():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.gain = nn.Parameter(torch.ones(4, 1, 1))

        def forward(self, x):
            return self.conv(x) * self.gain

    with pytest.raises(PurifyError, match="cannot re-initialise parameter 'gain' of Scaled"):
        fresh_clone(Scaled())


def test_tiny_torchvision_vit_and_convnext_are_covered_without_a_registry_name():
    vit = torchvision.models.VisionTransformer(16, 4, 2, 2, 16, 32, num_classes=10)
    config = torchvision.models.convnext.CNBlockConfig
    blocks = [config(8, 16, 1), config(16, None, 1)]
    convnext = torchvision.models.ConvNeXt(blocks, num_classes=10)
    for model in (vit, convnext):
        teacher = perturbed(model)
        assert equal_tensors(teacher, fresh_clone(teacher)) == []
