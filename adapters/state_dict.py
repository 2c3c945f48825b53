"""A plain state dict (`torch.save(model.state_dict())`). The architecture comes from `--arch`, or
is recognised when the keys are those of a NAD WideResNet."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from adapters.nad_checkpoint import looks_like_nad_wideresnet
from plugins import Adapter, CheckpointSource, InputConvention, LoadedModel, hookimpl
from plugins.errors import PurifyError
from plugins.models.normalized import cpu_state_dict
from plugins.models.registry import build_model
from plugins.models.wideresnet import wideresnet_shape


def detect(source: CheckpointSource) -> bool:
    payload = source.payload()
    return (
        isinstance(payload, dict)
        and bool(payload)
        and all(isinstance(value, torch.Tensor) for value in payload.values())
    )


def _num_classes(state_dict: dict[str, torch.Tensor]) -> int:
    matrices = [value for key, value in state_dict.items() if key.endswith("weight")]
    return int(matrices[-1].shape[0])


def load(source: CheckpointSource) -> LoadedModel:
    state_dict = {key.removeprefix("module."): value for key, value in source.payload().items()}
    arch = source.arch
    if arch is None:
        if not looks_like_nad_wideresnet(state_dict):
            raise PurifyError(
                f"{source.path} is a plain state dict; name its architecture with --arch NAME"
            )
        depth, width, _ = wideresnet_shape(state_dict)
        arch = f"wrn{depth}-{width}"
    classes = _num_classes(state_dict)
    model = build_model(arch, classes)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as error:
        detail = " ".join(str(error).split())[:300]
        raise PurifyError(f"{source.path} does not fit --arch {arch}: {detail}") from None
    return LoadedModel(
        model=model.eval(),
        convention=InputConvention(size=(32, 32), num_classes=classes),
        arch=arch,
        format="state_dict",
        container=None,
    )


def save(loaded: LoadedModel, model: nn.Module, path: Path) -> None:
    torch.save(cpu_state_dict(model), path)


@hookimpl
def register_adapters(register):
    register(
        Adapter(
            name="state_dict",
            description="plain torch state dict (architecture from --arch, or a NAD WideResNet)",
            detect=detect,
            load=load,
            save=save,
            suffix=".pth",
        )
    )
