"""BackdoorBench attack records (`record/<attack>/attack_result.pt`): a dict with `model_name`,
`num_classes`, `model` (a state dict, maybe with a `module.` prefix), `data_path`, `img_size`,
`clean_data`, `bd_train` and `bd_test`. Normalization lives in BackdoorBench's data transform
(`get_dataset_normalization`); we wrap it around the network. When the record folder holds the
poisoned test images (`bd_test_dataset/<label>/<index>.png`; LIRA's `bd_test_dataset_stage_one/`),
they give ASR without an attack spec. Records are pickled by BackdoorBench's torch 1.11 / numpy 1.x
(`numpy.core.multiarray` names, np.int64 `data_dict` keys); `CheckpointSource` allows exactly those.
The purified model is written in the same container, plus `defense/<defense>/defense_result.pt`
(`model_name`, `num_classes`, `model`) where BackdoorBench's `save_defense_result` puts it and its
`analysis/` scripts read it (checked against SCLBD/BackdoorBench f02e353)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from purify_backdoor import (
    Adapter,
    CheckpointSource,
    ImageSet,
    InputConvention,
    LoadedModel,
    Normalized,
    PurifyError,
    TriggeredSet,
    build_with_weights,
    cpu_state_dict,
    decode_images,
    hookimpl,
    output_classes,
    write_torch_file,
)

REQUIRED_KEYS = {"model_name", "num_classes", "model", "img_size", "clean_data", "bd_test"}
PREFIX = "module."
IDENTITY = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
NORMALIZATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "tiny": ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)),
    "gtsrb": IDENTITY,
    "celeba": IDENTITY,
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
DEFENSE_RESULT = "defense/{defense}/defense_result.pt"
RESIZED_VIT = "resize224-"  # the registry's name for nn.Sequential(Resize(224), vit)
POISONED_TEST_FOLDER = "bd_test_dataset"  # LIRA: bd_test_dataset_stage_one


def detect(source: CheckpointSource) -> bool:
    payload = source.payload()
    return isinstance(payload, dict) and payload.keys() >= REQUIRED_KEYS


def load(source: CheckpointSource) -> LoadedModel:
    record = source.payload()
    dataset = record["clean_data"]
    if dataset not in NORMALIZATION:
        known = ", ".join(NORMALIZATION)
        raise PurifyError(f"{source.path}: unknown BackdoorBench data set '{dataset}' ({known})")
    state = {key.removeprefix(PREFIX): value for key, value in record["model"].items()}
    classes = int(record["num_classes"])
    network = build_with_weights(_arch(record["model_name"], state), state, source.path)
    if output_classes(state) != classes:
        raise PurifyError(
            f"{source.path}: num_classes is {classes} but the weights have "
            f"{output_classes(state)}; the record is inconsistent"
        )
    mean, std = NORMALIZATION[dataset]
    size = tuple(int(v) for v in record["img_size"][:2])
    return LoadedModel(
        model=Normalized(network, mean, std).eval(),
        convention=InputConvention(size=size, num_classes=classes, mean=mean, std=std),
        arch=record["model_name"],
        format="backdoorbench",
        container=record,
        triggered=read_poisoned_test_set(record["bd_test"], source.path.parent, classes),
    )


def _arch(model_name: str, state: dict) -> str:
    """BackdoorBench wraps its ViTs as `nn.Sequential(Resize(224), vit)`: keys start with `1.`."""
    if model_name.startswith("vit_") and all(key.startswith("1.") for key in state):
        return RESIZED_VIT + model_name
    return model_name


def read_poisoned_test_set(state: Any, record_folder: Path, classes: int) -> TriggeredSet | None:
    """The poisoned test images a BackdoorBench attack saved on disk, or None when the record
    folder does not hold them (only the .pt file was copied)."""
    container = (state or {}).get("bd_data_container") or {}
    entries = container.get("data_dict") or {}
    paths, labels, targets = [], [], []
    for index in sorted(entries):
        entry = entries[index]
        if not isinstance(entry, dict) or "path" not in entry:
            return None
        path = _local_path(Path(entry["path"]), record_folder)
        if path is None:
            return None
        paths.append(path)
        bd_label, label = entry["other_info"][:2]
        targets.append(int(bd_label))
        labels.append(int(label))
    if not paths:
        return None
    names = tuple(str(k) for k in range(classes))
    poisoned = ImageSet(decode_images(paths), np.array(labels, dtype=np.int64), names)
    return TriggeredSet(poisoned, np.array(targets, dtype=np.int64))


def _local_path(stored: Path, record_folder: Path) -> Path | None:
    """Paths are stored as they were on the attacker's machine (relative to where it ran, or
    absolute): re-anchor them at the record folder."""
    folders = [i for i, part in enumerate(stored.parts) if part.startswith(POISONED_TEST_FOLDER)]
    if folders:
        candidate = record_folder.joinpath(*stored.parts[folders[-1] :])
        if candidate.is_file():
            return candidate
    return stored if stored.is_file() else None


def _stored_state(loaded: LoadedModel, model: nn.Module) -> dict:
    """Weights with the `module.` prefix restored when the input had it, so keys match."""
    state = cpu_state_dict(model)
    if any(key.startswith(PREFIX) for key in loaded.container["model"]):
        state = {PREFIX + key: value for key, value in state.items()}
    return state


def save(loaded: LoadedModel, model: nn.Module, path: Path) -> None:
    record = {**loaded.container, "model": _stored_state(loaded, model)}
    write_torch_file(record, path, loaded.legacy)


def save_defense_result(loaded: LoadedModel, model: nn.Module, entry: str, path: Path) -> None:
    """The keys of BackdoorBench's `save_defense_result`; its loader returns this dict as is."""
    defense = {
        "model_name": loaded.container["model_name"],
        "num_classes": loaded.container["num_classes"],
        "model": _stored_state(loaded, model),
    }
    write_torch_file(defense, path, loaded.legacy)


@hookimpl
def register_adapters(register):
    register(
        Adapter(
            name="backdoorbench",
            description="BackdoorBench attack_result.pt (+ record); also writes "
            "defense/<defense>/defense_result.pt",
            detect=detect,
            load=load,
            save=save,
            suffix=".pt",
            companions=(DEFENSE_RESULT,),
            save_companion=save_defense_result,
        )
    )
