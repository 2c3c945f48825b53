"""Architecture names -> builders. Names are what users type (`--arch wrn16-1`) and what reports
record."""

from __future__ import annotations

import re

import torch
from torch import nn

from purify_backdoor.errors import PurifyError
from purify_backdoor.models.preact_resnet import PreActResNet
from purify_backdoor.models.wideresnet import WideResNet

_WRN = re.compile(r"wrn-?(\d+)-(\d+)$")
# The torchvision classifiers that TrojAI rounds and BackdoorBench use.
_TORCHVISION = (
    "resnet18", "resnet34", "resnet50", "resnet101", "vgg11_bn", "vgg16_bn", "vgg19_bn",
    "densenet121", "mobilenet_v2", "mobilenet_v3_large", "shufflenet_v2_x1_0", "squeezenet1_1",
    "googlenet", "inception_v3", "efficientnet_b0", "convnext_tiny", "vit_b_16", "wide_resnet50_2",
)  # fmt: skip


_PREACT = {"preactresnet18": (2, 2, 2, 2), "preactresnet34": (3, 4, 6, 3)}


def known_architectures() -> list[str]:
    return ["wrn<depth>-<width> (e.g. wrn16-1, wrn16-2, wrn40-2)", *_PREACT, *_TORCHVISION]


def build_model(arch: str, num_classes: int) -> nn.Module:
    """A freshly initialised network of the named architecture."""
    name = arch.lower()
    if match := _WRN.match(name):
        return WideResNet(int(match.group(1)), int(match.group(2)), num_classes)
    if name in _PREACT:
        return PreActResNet(_PREACT[name], num_classes)
    if name in _TORCHVISION:
        import torchvision  # imported here: it adds seconds to every start of the CLI

        return getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    raise PurifyError(f"unknown architecture '{arch}'; known: {', '.join(known_architectures())}")


def output_classes(state_dict: dict[str, torch.Tensor]) -> int:
    """Classes of a classifier's weights: the rows of its last weight matrix."""
    weights = [
        value
        for key, value in state_dict.items()
        if key.endswith("weight") and isinstance(value, torch.Tensor) and value.dim() > 0
    ]
    if not weights:
        raise PurifyError("the state dict holds no weight tensors; is this a model checkpoint?")
    return int(weights[-1].shape[0])


def build_with_weights(arch: str, state_dict: dict[str, torch.Tensor], where: object) -> nn.Module:
    """A network of `arch` holding `state_dict`, in eval mode; a mismatch is one clear line that
    names the first missing, unexpected and wrongly shaped keys."""
    model = build_model(arch, output_classes(state_dict))
    problems = weight_mismatches(model.state_dict(), state_dict)
    if problems:
        raise PurifyError(
            f"{where} does not fit architecture {arch}: {problems}; pass the right --arch or "
            f"check that the file is the model you meant"
        )
    model.load_state_dict(state_dict)
    return model.eval()


def weight_mismatches(
    expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor], show: int = 3
) -> str:
    """The first `show` missing, unexpected and wrongly shaped keys, or "" when all fit."""
    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    shapes = [
        f"{key} {_shape(given[key])} vs {_shape(value)} expected"
        for key, value in expected.items()
        if key in given and _shape(given[key]) != _shape(value)
    ]
    parts = [
        f"{label} ({len(items)}): {', '.join(items[:show])}{', ...' if len(items) > show else ''}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes))
        if items
    ]
    return "; ".join(parts)


def _shape(value: object) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__
