"""Every architecture BackdoorBench's generate_cls_model builds, TrojAI's torchvision classifiers,
and the CIFAR networks of BackdoorBench and BackdoorBox, built on the meta device (no memory)."""

from __future__ import annotations

import pytest
import torch

from purify_backdoor.models.registry import build_model, recognise_architecture

BACKDOORBENCH = (
    "preactresnet18", "resnet18", "resnet34", "resnet50", "alexnet", "vgg11", "vgg16", "vgg19",
    "vgg19_bn", "squeezenet1_0", "densenet121", "densenet161", "inception_v3", "googlenet",
    "shufflenet_v2_x1_0", "mobilenet_v2", "mobilenet_v3_large", "resnext50_32x4d",
    "wide_resnet50_2", "mnasnet1_0", "efficientnet_b0", "efficientnet_b3", "convnext_tiny",
    "resnext29", "senet18", "resize224-vit_b_16", "resize224-vit_b_32", "resize224-vit_l_16",
    "resize224-vit_l_32",
)  # fmt: skip
CIFAR = ("preactresnet18", "resnext29", "senet18", "cifar_resnet18", "cifar_resnet50", "airbench94")


@pytest.mark.parametrize("arch", BACKDOORBENCH)
def test_builds_with_the_class_count(arch):
    with torch.device("meta"):
        model = build_model(arch, 7)
    side = 32 if arch in CIFAR or arch.startswith("resize224") else 299
    logits = model.eval()(torch.empty(1, 3, side, side, device="meta"))
    assert logits.shape == (1, 7)


@pytest.mark.parametrize("arch", [*CIFAR, "vgg19", "efficientnet_b3", "resize224-vit_b_32"])
def test_recognised_from_keys_and_shapes(arch):
    with torch.device("meta"):
        state = build_model(arch, 10).state_dict()
    assert recognise_architecture(state) == arch
