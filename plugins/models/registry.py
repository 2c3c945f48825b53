"""Architecture names -> builders. Names are what users type (`--arch wrn16-1`) and what reports
record."""

from __future__ import annotations

import re
from collections.abc import Callable

import torchvision
from torch import nn

from plugins.errors import PurifyError
from plugins.models.wideresnet import WideResNet

_WRN = re.compile(r"wrn-?(\d+)-(\d+)$")
_TORCHVISION = (
    "resnet18",
    "resnet34",
    "resnet50",
    "vgg11_bn",
    "vgg16_bn",
    "densenet121",
    "mobilenet_v2",
    "shufflenet_v2_x1_0",
    "squeezenet1_1",
    "googlenet",
    "inception_v3",
)


def _torchvision_builder(name: str) -> Callable[[int], nn.Module]:
    return lambda num_classes: getattr(torchvision.models, name)(
        weights=None, num_classes=num_classes
    )


def known_architectures() -> list[str]:
    return ["wrn<depth>-<width> (e.g. wrn16-1, wrn16-2, wrn40-2)", *_TORCHVISION]


def build_model(arch: str, num_classes: int) -> nn.Module:
    """A freshly initialised network of the named architecture."""
    name = arch.lower()
    if match := _WRN.match(name):
        return WideResNet(int(match.group(1)), int(match.group(2)), num_classes)
    if name in _TORCHVISION:
        return _torchvision_builder(name)(num_classes)
    raise PurifyError(f"unknown architecture '{arch}'; known: {', '.join(known_architectures())}")
