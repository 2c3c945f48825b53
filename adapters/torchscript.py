"""TorchScript archives (`torch.jit.save`): the weights are moved into a fresh `--arch` network so
defenses can train it, and the result is traced back into TorchScript. Loading TorchScript runs
the code in the archive, so it needs `--trust-checkpoint`."""

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
    hookimpl,
    output_classes,
    unwrap,
)


def detect(source: CheckpointSource) -> bool:
    return source.is_torchscript


def load(source: CheckpointSource) -> LoadedModel:
    if not source.trust:
        raise PurifyError(
            f"{source.path} is TorchScript, which runs code from the file when loaded; pass "
            f"--trust-checkpoint only if you trust where it came from"
        )
    if source.arch is None:
        raise PurifyError(f"{source.path} is TorchScript; name its architecture with --arch NAME")
    scripted = torch.jit.load(source.path, map_location="cpu")
    state = scripted.state_dict()
    return LoadedModel(
        model=build_with_weights(source.arch, state, source.path),
        convention=InputConvention(size=(32, 32), num_classes=output_classes(state)),
        arch=source.arch,
        format="torchscript",
    )


def save(loaded: LoadedModel, model: nn.Module, path: Path) -> None:
    network = unwrap(model).cpu().eval()
    example = torch.zeros(1, 3, *loaded.convention.size)
    torch.jit.save(torch.jit.trace(network, example), path)


@hookimpl
def register_adapters(register):
    register(
        Adapter(
            name="torchscript",
            description="TorchScript archive with --arch NAME; needs --trust-checkpoint",
            detect=detect,
            load=load,
            save=save,
            suffix=".pt",
        )
    )
