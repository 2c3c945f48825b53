"""The NAD checkpoint format (`.pth.tar`): a dict with `state_dict` of a NAD WideResNet, `epoch`,
`best_clean_acc`, `best_bad_acc` and often `optimizer`. Used by the NAD and MEDIC model zoos.
Inputs are RGB in [0, 1] with no mean/std normalization (ToTensor only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from purify_backdoor import (
    Adapter,
    CheckpointSource,
    InputConvention,
    LoadedModel,
    build_with_weights,
    cpu_state_dict,
    hookimpl,
    recorded_fraction,
    wideresnet_shape,
    write_torch_file,
)

ATTACK_KEY = "purify_attack"


def looks_like_nad_wideresnet(state_dict: Any) -> bool:
    return (
        isinstance(state_dict, dict)
        and "block1.layer.0.conv1.weight" in state_dict
        and "fc.weight" in state_dict
    )


def detect(source: CheckpointSource) -> bool:
    payload = source.payload()
    return isinstance(payload, dict) and looks_like_nad_wideresnet(payload.get("state_dict"))


def load(source: CheckpointSource) -> LoadedModel:
    container = source.payload()
    state_dict = container["state_dict"]
    depth, width, classes = wideresnet_shape(state_dict)
    arch = f"wrn{depth}-{width}"
    return LoadedModel(
        model=build_with_weights(arch, state_dict, source.path),
        convention=InputConvention(size=(32, 32), num_classes=classes),
        arch=arch,
        format="nad",
        container=container,
        attack=container.get(ATTACK_KEY),
        recorded_accuracy=recorded_fraction(container.get("best_clean_acc"), percent=True),
    )


def save(loaded: LoadedModel, model: nn.Module, path: Path) -> None:
    """Same keys as the input; a model made by `purify attack` gets a fresh NAD container."""
    container = dict(loaded.container or {"epoch": 0, "best_clean_acc": 0.0, "best_bad_acc": 0.0})
    container["state_dict"] = cpu_state_dict(model)
    if loaded.attack is not None:
        container[ATTACK_KEY] = loaded.attack
    write_torch_file(container, path, loaded.legacy)


@hookimpl
def register_adapters(register):
    register(
        Adapter(
            name="nad",
            description="NAD/MEDIC zoo .pth.tar: {'state_dict', 'epoch', 'best_clean_acc', ...}",
            detect=detect,
            load=load,
            save=save,
            suffix=".pth.tar",
        )
    )
