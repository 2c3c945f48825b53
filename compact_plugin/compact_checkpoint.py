"""The self-describing compact checkpoint (`<stem>.purified.compact.pt`): the decomposed layers'
ranks and the model's input convention beside a plain state dict, so `purify` rebuilds the small
model from a weights-only load."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from purify_backdoor import (
    Adapter,
    CheckpointSource,
    InputConvention,
    LoadedModel,
    Normalized,
    PurifyError,
    build_model,
    cpu_state_dict,
    unwrap,
    weight_mismatches,
)
from purify_backdoor.compact.tucker import TuckerConv2d

FORMAT_KEY = "purify_compact"
SUFFIX = ".compact.pt"


def detect(source: CheckpointSource) -> bool:
    payload = source.payload()
    return isinstance(payload, dict) and isinstance(payload.get(FORMAT_KEY), dict)


def load(source: CheckpointSource) -> LoadedModel:
    payload = source.payload()
    record, state_dict = payload[FORMAT_KEY], payload["state_dict"]
    network = build_model(record["arch"], int(record["num_classes"]))
    for name, (out_rank, in_rank) in record["ranks"].items():
        network.set_submodule(
            name, TuckerConv2d(network.get_submodule(name), int(out_rank), int(in_rank))
        )
    problems = weight_mismatches(network.state_dict(), state_dict)
    if problems:
        raise PurifyError(f"{source.path} does not match its own layer record: {problems}")
    network.load_state_dict(state_dict)
    mean, std = record.get("mean"), record.get("std")
    return LoadedModel(
        model=(Normalized(network, mean, std) if mean and std else network).eval(),
        convention=InputConvention(
            size=tuple(record["size"]),
            num_classes=int(record["num_classes"]),
            mean=tuple(mean) if mean else None,
            std=tuple(std) if std else None,
        ),
        arch=record["arch"],
        format="compact",
        attack=record.get("attack"),
    )


def save(loaded: LoadedModel, model: nn.Module, path: Path) -> None:
    convention = loaded.convention
    ranks = {
        name: list(module.ranks)
        for name, module in unwrap(model).named_modules()
        if isinstance(module, TuckerConv2d)
    }
    record = {
        "arch": loaded.arch,
        "num_classes": convention.num_classes,
        "size": list(convention.size),
        "mean": list(convention.mean) if convention.mean else None,
        "std": list(convention.std) if convention.std else None,
        "ranks": ranks,
        "attack": loaded.attack,
    }
    torch.save({FORMAT_KEY: record, "state_dict": cpu_state_dict(model)}, path)


ADAPTER = Adapter(
    name="compact",
    description="Clean & Compact's compressed model: Tucker-2 layer ranks + state dict",
    detect=detect,
    load=load,
    save=save,
    suffix=SUFFIX,
)
