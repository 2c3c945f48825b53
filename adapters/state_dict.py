"""A state dict as people save one: plain (`torch.save(model.state_dict())`) or wrapped in a
training checkpoint under a common key (`model_state_dict`, `net_state_dict`, `state_dict`,
`net`, `model`, or two of them nested), with the epoch, optimizer and so on beside it. The
architecture comes from `--arch`, or is recognised from the keys and shapes when one registry
network fits exactly (NAD WideResNets, BackdoorBench's and BackdoorBox's CIFAR networks, the
torchvision classifiers). Written back in the same container, under the same keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    recognise_architecture,
    write_torch_file,
)

WRAPPER_KEYS = ("model_state_dict", "net_state_dict", "state_dict", "net", "model")
PREFIX = "module."


def _is_state_dict(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(key, str) and isinstance(v, torch.Tensor) for key, v in value.items())
    )


def find_state_dict(payload: Any) -> tuple[str, ...] | None:
    """The keys leading to the weights: () for a plain state dict, ("net",) or
    ("model", "state_dict") for a wrapped one; None when there is none."""
    if _is_state_dict(payload):
        return ()
    if not isinstance(payload, dict):
        return None
    for key in WRAPPER_KEYS:
        inner = payload.get(key)
        if _is_state_dict(inner):
            return (key,)
        if isinstance(inner, dict):
            for nested in WRAPPER_KEYS:
                if _is_state_dict(inner.get(nested)):
                    return (key, nested)
    return None


def detect(source: CheckpointSource) -> bool:
    return find_state_dict(source.payload()) is not None


def load(source: CheckpointSource) -> LoadedModel:
    payload = source.payload()
    keys = find_state_dict(payload)
    stored = payload
    for key in keys:
        stored = stored[key]
    state_dict = {key.removeprefix(PREFIX): value for key, value in stored.items()}
    arch = source.arch or recognise_architecture(state_dict)
    if arch is None:
        where = f" (under {'/'.join(keys)})" if keys else ""
        raise PurifyError(
            f"{source.path} holds a state dict{where} that no known architecture fits exactly; "
            f"name its architecture with --arch NAME (see `purify plugins`)"
        )
    model = build_with_weights(arch, state_dict, source.path)
    prefixed = any(key.startswith(PREFIX) for key in stored)
    return LoadedModel(
        model=model,
        convention=InputConvention(size=(32, 32), num_classes=output_classes(state_dict)),
        arch=arch,
        format="state_dict",
        container={"payload": payload, "keys": keys, "prefixed": prefixed},
    )


def save(loaded: LoadedModel, model: nn.Module, path: Path) -> None:
    """The input's container with the weights replaced: same keys, same `module.` prefix."""
    state = cpu_state_dict(model)
    container = loaded.container or {"payload": None, "keys": (), "prefixed": False}
    if container["prefixed"]:
        state = {PREFIX + key: value for key, value in state.items()}
    write_torch_file(_replaced(container["payload"], container["keys"], state), path, loaded.legacy)


def _replaced(payload: Any, keys: tuple[str, ...], state: dict) -> Any:
    if not keys:
        return state
    return {**payload, keys[0]: _replaced(payload[keys[0]], keys[1:], state)}


@hookimpl
def register_adapters(register):
    register(
        Adapter(
            name="state_dict",
            description="a state dict, plain or under model_state_dict/net/model/...; "
            "architecture from --arch or recognised",
            detect=detect,
            load=load,
            save=save,
            suffix=".pth",
        )
    )
