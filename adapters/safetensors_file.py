"""safetensors files (`--save-format safetensors`): tensors only, nothing to unpickle, so they are
the safe way to hand a purified model on. The header's metadata records what `purify` needs to
rebuild the model (architecture, classes, input size and normalization, attack spec)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from purify_backdoor import (
    Adapter,
    CheckpointSource,
    InputConvention,
    LoadedModel,
    Normalized,
    PurifyError,
    build_with_weights,
    cpu_state_dict,
    hookimpl,
    output_classes,
)

METADATA_KEY = "purify"


def detect(source: CheckpointSource) -> bool:
    """An 8-byte little-endian header length, then a JSON header that fits in the file."""
    path = source.path
    if not path.is_file() or path.stat().st_size < 10:
        return False
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        opening = handle.read(1)
    return opening == b"{" and 8 + length <= path.stat().st_size


def load(source: CheckpointSource) -> LoadedModel:
    try:
        with safe_open(source.path, framework="pt") as handle:
            metadata = handle.metadata() or {}
        state_dict = load_file(source.path)
        record = json.loads(metadata.get(METADATA_KEY, "{}"))
    except (SafetensorError, OSError, ValueError) as error:
        raise PurifyError(f"cannot read safetensors file {source.path}: {error}") from None
    arch = record.get("arch") or source.arch
    if arch is None:
        raise PurifyError(f"{source.path} does not record its architecture; pass --arch NAME")
    model = build_with_weights(arch, state_dict, source.path)
    mean, std = record.get("mean"), record.get("std")
    bgr, scale = bool(record.get("bgr", False)), float(record.get("scale", 1.0))
    convention = InputConvention(
        size=tuple(record.get("size", (32, 32))),
        num_classes=output_classes(state_dict),
        mean=tuple(mean) if mean else None,
        std=tuple(std) if std else None,
        bgr=bgr,
        scale=scale,
    )
    wrapped = (mean and std) or bgr or scale != 1.0
    mean, std = mean or (0.0, 0.0, 0.0), std or (1.0, 1.0, 1.0)
    return LoadedModel(
        model=Normalized(model, mean, std, bgr=bgr, scale=scale) if wrapped else model,
        convention=convention,
        arch=arch,
        format="safetensors",
        attack=record.get("attack"),
    )


def save(loaded: LoadedModel, model: nn.Module, path: Path) -> None:
    record = {
        "arch": loaded.arch,
        **loaded.convention.as_record(),
        "attack": loaded.attack,
        "source_format": loaded.format,
    }
    tensors = {key: value.contiguous() for key, value in cpu_state_dict(model).items()}
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(record)})


@hookimpl
def register_adapters(register):
    register(
        Adapter(
            name="safetensors",
            description="safetensors weights with purify metadata (arch, input convention)",
            detect=detect,
            load=load,
            save=save,
            suffix=".safetensors",
        )
    )
