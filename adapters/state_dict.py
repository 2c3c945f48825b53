"""A plain state dict (`torch.save(model.state_dict())`). The architecture comes from `--arch`, or
is recognised when the keys are those of a NAD WideResNet."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from purify_backdoor import (
    Adapter,
    CheckpointSource,
    InputConvention,
    LoadedModel,
    PurifyError,
    build_with_weights,
    cpu_state_dict,
    hookimpl,
    output_classes,
    wideresnet_shape,
)
from purify_backdoor.adapters.nad_checkpoint import looks_like_nad_wideresnet


def detect(source: CheckpointSource) -> bool:
    payload = source.payload()
    return (
        isinstance(payload, dict)
        and bool(payload)
        and all(isinstance(value, torch.Tensor) for value in payload.values())
    )


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
    model = build_with_weights(arch, state_dict, source.path)
    return LoadedModel(
        model=model,
        convention=InputConvention(size=(32, 32), num_classes=output_classes(state_dict)),
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
