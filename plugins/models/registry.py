"""Architecture names -> builders. Names are what users type (`--arch wrn16-1`) and what reports
record."""

from __future__ import annotations

import re
import warnings

import torch
from torch import nn

from purify_backdoor.errors import PurifyError
from purify_backdoor.models.airbench import AirbenchNet
from purify_backdoor.models.cifar_resnet import DEPTHS, CifarResNet
from purify_backdoor.models.preact_resnet import PreActResNet
from purify_backdoor.models.resnext import ResNeXt29
from purify_backdoor.models.senet import senet18
from purify_backdoor.models.wideresnet import WideResNet, wideresnet_shape

_WRN = re.compile(r"wrn-?(\d+)-(\d+)$")
# The torchvision classifiers that TrojAI rounds and BackdoorBench's `generate_cls_model` build,
# with torchvision's own constructor and `num_classes` (as both do).
_TORCHVISION = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnext50_32x4d", "wide_resnet50_2",
    "vgg11", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn", "alexnet",
    "densenet121", "densenet161", "mobilenet_v2", "mobilenet_v3_large", "mnasnet1_0",
    "shufflenet_v2_x1_0", "squeezenet1_0", "squeezenet1_1", "googlenet", "inception_v3",
    "efficientnet_b0", "efficientnet_b3", "convnext_tiny",
    "vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32",
)  # fmt: skip
# BackdoorBench feeds its 32 x 32 images to torchvision ViTs through `nn.Sequential(Resize(224),
# vit)`, so their state dict keys start with `1.`; `resize224-vit_b_16` is that network.
RESIZED = "resize224-"
_VITS = tuple(name for name in _TORCHVISION if name.startswith("vit_"))
_PREACT = {"preactresnet18": (2, 2, 2, 2), "preactresnet34": (3, 4, 6, 3)}
# BackdoorBox's (and kuangliu's) CIFAR ResNets: `cifar_resnet18` ... `cifar_resnet152`.
_CIFAR_RESNET = {f"cifar_resnet{depth}": depth for depth in DEPTHS}
_OWN = {"resnext29": ResNeXt29, "senet18": senet18, "airbench94": AirbenchNet}


def known_architectures() -> list[str]:
    return [
        "wrn<depth>-<width> (e.g. wrn16-1, wrn16-2, wrn40-2)",
        *_PREACT,
        *_CIFAR_RESNET,
        *_OWN,
        *_TORCHVISION,
        *(RESIZED + name for name in _VITS),
    ]


def build_model(arch: str, num_classes: int) -> nn.Module:
    """A freshly initialised network of the named architecture."""
    name = arch.lower()
    if match := _WRN.match(name):
        return WideResNet(int(match.group(1)), int(match.group(2)), num_classes)
    if name in _PREACT:
        return PreActResNet(_PREACT[name], num_classes)
    if name in _CIFAR_RESNET:
        return CifarResNet(_CIFAR_RESNET[name], num_classes)
    if name in _OWN:
        return _OWN[name](num_classes=num_classes)
    if name in _TORCHVISION:
        import torchvision  # imported here: it adds seconds to every start of the CLI

        return getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    if name.startswith(RESIZED) and name.removeprefix(RESIZED) in _VITS:
        from torchvision.transforms import Resize

        vit = build_model(name.removeprefix(RESIZED), num_classes)
        return nn.Sequential(Resize((224, 224)), vit)
    raise PurifyError(f"unknown architecture '{arch}'; known: {', '.join(known_architectures())}")


def recognise_architecture(state_dict: dict[str, torch.Tensor]) -> str | None:
    """The registry architecture whose weights have exactly these keys and shapes, or None.
    Networks are built on the meta device, so trying them all costs about a second."""
    if "block1.layer.0.conv1.weight" in state_dict:
        depth, width, _ = wideresnet_shape(state_dict)
        return f"wrn{depth}-{width}"
    classes = output_classes(state_dict)
    names = [*_PREACT, *_CIFAR_RESNET, *_OWN, *_TORCHVISION, *(RESIZED + n for n in _VITS)]
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")  # torchvision's notes on its default initialisation
        for name in names:
            if not weight_mismatches(build_model(name, classes).state_dict(), state_dict):
                return name
    return None


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
