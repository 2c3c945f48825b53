"""BackdoorBench attack records (`record/<attack>/attack_result.pt`): a dict with `model_name`,
`num_classes`, `model` (a state dict, maybe with a `module.` prefix), `data_path`, `img_size`,
`clean_data`, `bd_train` and `bd_test`. Normalization lives in BackdoorBench's data transform
(`get_dataset_normalization`); we wrap it around the network. When the record folder holds the
poisoned test images (`bd_test_dataset/<label>/<index>.png`; LIRA's `bd_test_dataset_stage_one/`),
they give ASR without an attack spec. Records are pickled by BackdoorBench's torch 1.11 / numpy 1.x
(`numpy.core.multiarray` names, np.int64 `data_dict` keys); `CheckpointSource` allows exactly those,
and a numpy-1 record is written back with numpy-1 names (numpy_pickle.py), so BackdoorBench's own
stack opens the purified record. The input is the record file or its folder (`record/<attack>`).
By default the purified record is `record/<attack>/attack_result.purify-<defense>.pt`, beside
`defense/purify-<defense>/defense_result.pt` (`model_name`, `num_classes`, `model`): the folder
and keys of BackdoorBench's `save_defense_result`, under a name none of its own defenses (`ft`,
`nad`, `anp`, `clp`, ...) uses, so they never overwrite each other (checked against
SCLBD/BackdoorBench f02e353)."""

from __future__ import annotations

import csv
import os
import stat
import weakref
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
    names_numpy1,
    output_classes,
    recorded_fraction,
    refuse_special,
    save_with_numpy1_names,
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
RECORD_FILE = "attack_result.pt"  # in record/<attack>/, as save_attack_result names it
# purify's defenses' folder: BackdoorBench's own defenses write defense/<their name>/
DEFENSE_FOLDER = "defense/purify-{defense}"
DEFENSE_RESULT = DEFENSE_FOLDER + "/defense_result.pt"
PURIFIED_SUFFIX = ".purify-{defense}"  # attack_result.pt -> attack_result.purify-medic.pt
RESIZED_VIT = "resize224-"  # the registry's name for nn.Sequential(Resize(224), vit)
POISONED_TEST_FOLDER = "bd_test_dataset"  # LIRA: bd_test_dataset_stage_one
METRICS_SUMMARY = "attack_df_summary.csv"  # beside attack_result.pt: the attack's final metrics


_RECORDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def record_source(source: CheckpointSource) -> CheckpointSource:
    """The record file itself: the source, or for a record folder its `attack_result.pt`
    (read once for detection and loading alike)."""
    if not source.path.is_dir():
        return source
    if source not in _RECORDS:
        path = source.path / RECORD_FILE
        if os.path.lexists(path):
            refuse_special(path)
        _RECORDS[source] = CheckpointSource(path, trust=source.trust, arch=source.arch)
    return _RECORDS[source]


def detect(source: CheckpointSource) -> bool:
    payload = record_source(source).payload()
    return isinstance(payload, dict) and payload.keys() >= REQUIRED_KEYS


def load(source: CheckpointSource) -> LoadedModel:
    source = record_source(source)
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
        recorded_accuracy=recorded_test_accuracy(source.path.parent),
        numpy1=names_numpy1(source.path),
        data_path=recorded_data(record.get("data_path"), source.path.parent),
        data_name=dataset,
    )


def recorded_data(data_path: Any, record_folder: Path) -> Path | None:
    """The data set the record names, where it is on this machine: BackdoorBench stores
    `data_path` relative to its checkout (`./data/cifar10`), which holds `record/<attack>/`; a
    copied record may keep it beside itself. None when it names none or it is in neither place."""
    if not isinstance(data_path, str) or not data_path:
        return None
    stored = Path(data_path)
    for base in (record_folder, record_folder.parent.parent, Path.cwd()):
        candidate = stored if stored.is_absolute() else base / stored
        if candidate.is_dir():
            return candidate
    return None


def default_output(model_path: Path, defense: str, suffix: str) -> Path:
    """One purified record per defense in the record folder: `attack_result.pt` (or the folder)
    -> `attack_result.purify-<defense>.pt`, beside its `defense/purify-<defense>/`."""
    folder = model_path if model_path.is_dir() else model_path.parent
    name = RECORD_FILE if model_path.is_dir() else model_path.name
    stem = name[: -len(".pt")] if name.endswith(".pt") else name
    return folder / f"{stem}{PURIFIED_SUFFIX.format(defense=defense)}{suffix}"


def recorded_test_accuracy(record_folder: Path) -> float | None:
    """The clean test accuracy the attack measured when it finished: `attack_result.pt` holds no
    metrics, but BackdoorBench's `Metric_Aggregator.summary()` writes them beside it as
    `attack_df_summary.csv` (rows `last`, `valid_max`, `exist_nan_value`; column `test_acc`, a
    fraction). None when the file was not copied, is not a plain file, or holds no such cell."""
    path = record_folder / METRICS_SUMMARY
    if not path.is_file() or not stat.S_ISREG(path.lstat().st_mode):
        return None
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        rows = {row.get("", ""): row for row in csv.DictReader(handle)}
    try:
        value = float(rows.get("last", {}).get("test_acc") or "nan")
    except ValueError:
        return None
    return recorded_fraction(value, percent=False)


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
    absolute): re-anchor them at the record folder. A link or special file on the way there is
    refused, never followed, and `..` never leads out of it."""
    folders = [i for i, part in enumerate(stored.parts) if part.startswith(POISONED_TEST_FOLDER)]
    relative = stored.parts[folders[-1] :] if folders else ()
    if relative and ".." not in relative:
        for depth in range(1, len(relative) + 1):
            step = record_folder.joinpath(*relative[:depth])
            if not os.path.lexists(step):
                break
            refuse_special(step)
        candidate = record_folder.joinpath(*relative)
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
    _write(loaded, record, path)


def _write(loaded: LoadedModel, obj: dict, path: Path) -> None:
    """In the input's container: pre-1.6 format, or numpy-1 names, as the input came."""
    if loaded.numpy1 and not loaded.legacy:
        save_with_numpy1_names(obj, path)
    else:
        write_torch_file(obj, path, loaded.legacy)


def save_defense_result(loaded: LoadedModel, model: nn.Module, entry: str, path: Path) -> None:
    """The keys of BackdoorBench's `save_defense_result`; its loader returns this dict as is."""
    defense = {
        "model_name": loaded.container["model_name"],
        "num_classes": loaded.container["num_classes"],
        "model": _stored_state(loaded, model),
    }
    _write(loaded, defense, path)


@hookimpl
def register_adapters(register):
    register(
        Adapter(
            name="backdoorbench",
            description="BackdoorBench attack_result.pt or its record folder; writes "
            "attack_result.purify-<defense>.pt and defense/purify-<defense>/defense_result.pt",
            detect=detect,
            load=load,
            save=save,
            suffix=".pt",
            companions=(DEFENSE_RESULT,),
            save_companion=save_defense_result,
            default_output=default_output,
        )
    )
