"""NIST TrojAI model folders: `model.pt` (a whole pickled model), `config.json`, and example
images. Unpickling runs code from the file, so loading needs `--trust-checkpoint`. The round is
told from the folder's own files (`rounds.py`) and sets the preprocessing; config.json is
read as plain JSON and gives the class count and the triggers; the triggered example images the
round ships give ASR. Its clean example images are a data format too (`examples.py`), so the
folder itself can be `--data`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from purify_backdoor import (
    Adapter,
    CheckpointSource,
    ImageSet,
    InputConvention,
    LoadedModel,
    PurifyError,
    TriggeredSet,
    copy_regular_tree,
    decode_images,
    hookimpl,
    recorded_fraction,
    refuse_specials_in,
    unwrap,
)
from purify_backdoor.adapters.trojai.examples import EXAMPLE_IMAGES
from purify_backdoor.adapters.trojai.rounds import (
    ROUND_INPUTS,
    TrojAIInput,
    chosen_round,
    class_count,
    plain_config,
    trigger_targets,
)

MODEL_FILE = "model.pt"
# Packages a round's pickled models import, and the extra that installs them.
NEEDED_PACKAGES = {"timm": "round 11's ViTs; pip install 'purify-backdoor[trojai]'"}
ROUND4_POISONED = re.compile(r"class_(\d+)_trigger_(\d+)_example_\d+\.(png|jpg|jpeg)$", re.I)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
STATS_FILES, STATS_ACCURACY = "*stats.json", "final_clean_data_test_acc"


def detect(source: CheckpointSource) -> bool:
    return source.path.is_dir() and (source.path / MODEL_FILE).is_file()


def load(source: CheckpointSource) -> LoadedModel:
    folder, model_file = source.path, source.path / MODEL_FILE
    refuse_specials_in(folder)
    config = plain_config(folder)
    round_name = chosen_round(folder, config, source.trojai_round)
    round_input = ROUND_INPUTS[round_name]
    if not source.trust:
        raise PurifyError(
            f"{model_file} is a whole pickled model (TrojAI); loading it runs code from the file. "
            f"Pass --trust-checkpoint only if you trust where it came from"
        )
    network = _unpickle(model_file).eval()
    classes = class_count(config)
    if classes is None:  # round 1 has no config.json: ask the network at the round's input size
        with torch.no_grad():
            side = round_input.crop or round_input.image_size
            classes = int(network(torch.zeros(1, 3, side, side)).shape[1])
    pairs = trigger_targets(config)
    return LoadedModel(
        model=TrojAIInput(network, round_input),
        convention=InputConvention(
            size=(round_input.image_size, round_input.image_size),
            num_classes=classes,
            preprocessing=f"TrojAI round {round_name}: {round_input.describe()}",
        ),
        arch=type(network).__name__,
        format="trojai",
        container=folder,
        triggered=_shipped_triggered_images(folder, pairs, classes),
        recorded_accuracy=recorded_test_accuracy(folder),
    )


def recorded_test_accuracy(folder: Path) -> float | None:
    """The clean test accuracy TrojAI's trainer recorded, from the training statistics it writes
    beside the model (`<model file>.stats.json`, `TrainingRunStatistics`' summary), read as
    plain JSON: `final_clean_data_test_acc`, a percent in trojai's optimizers (a value of at
    most 1 is taken as a fraction). None when the round's folder holds no such file."""
    for path in sorted(folder.glob(STATS_FILES)):
        try:
            stats = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        value = stats.get(STATS_ACCURACY) if isinstance(stats, dict) else None
        percent = isinstance(value, (int, float)) and value > 1
        recorded = recorded_fraction(value, percent=percent)
        if recorded is not None:
            return recorded
    return None


def _unpickle(model_file: Path) -> nn.Module:
    try:
        network = torch.load(model_file, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as error:
        package = (error.name or "").split(".")[0]
        hint = NEEDED_PACKAGES.get(package, f"pip install {package}")
        raise PurifyError(
            f"{model_file} needs the Python package '{package}' to load ({hint})"
        ) from None
    except Exception as error:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
        raise PurifyError(f"cannot load {model_file}: {type(error).__name__}: {error}") from None
    if not isinstance(network, nn.Module):
        raise PurifyError(f"{model_file} holds a {type(network).__name__}, not a torch model")
    return network


def _shipped_triggered_images(
    folder: Path, pairs: list[tuple[int, int]], classes: int
) -> TriggeredSet | None:
    """Round 4: `poisoned_example_data/class_<source>_trigger_<t>_example_<n>.png`, target from
    trigger t of config.json. Round 11: `poisoned-example-data/<id>.png` with `<id>.json`
    holding the target label (or `{"clean_label", "poisoned_label"}`); the source class is the
    trigger's with that target."""
    paths, labels, targets = [], [], []
    round4 = folder / "poisoned_example_data"
    if round4.is_dir() and pairs:
        for path in sorted(round4.iterdir()):
            match = ROUND4_POISONED.match(path.name)
            if match and int(match.group(2)) < len(pairs):
                paths.append(path)
                labels.append(int(match.group(1)))
                targets.append(pairs[int(match.group(2))][1])
    round11 = folder / "poisoned-example-data"
    if round11.is_dir():
        sources = {target: source for source, target in reversed(pairs)}
        for path in sorted(round11.iterdir()):
            labelled = path.with_suffix(".json")
            if path.suffix.lower() not in IMAGE_SUFFIXES or not labelled.is_file():
                continue
            label = json.loads(labelled.read_text())
            if isinstance(label, dict):
                target, source = label.get("poisoned_label"), label.get("clean_label")
            else:
                target, source = label, None
            source = sources.get(int(target)) if source is None else source
            if source is None:
                continue
            paths.append(path)
            labels.append(int(source))
            targets.append(int(target))
    if not paths:
        return None
    names = tuple(str(k) for k in range(classes))
    images = ImageSet(decode_images(paths), np.array(labels, dtype=np.int64), names)
    return TriggeredSet(images, np.array(targets, dtype=np.int64))


def save(loaded: LoadedModel, model: nn.Module, path: Path) -> None:
    """A folder like the input: the purified `model.pt` (a whole pickled model, as TrojAI and its
    mitigation round read it) and copies of everything else (config, example images), so the
    output is a TrojAI model folder of the same round. `load` refused links and special files in
    the input; the copy refuses them too rather than follow one put there since."""
    copy_regular_tree(loaded.container, path, skip={MODEL_FILE})
    torch.save(unwrap(model).cpu(), path / MODEL_FILE)


@hookimpl
def register_adapters(register):
    register(
        Adapter(
            name="trojai",
            description="NIST TrojAI model folder (model.pt + config.json), rounds 1-4, 11 and "
            "the 2024 mitigation round; --trust-checkpoint",
            detect=detect,
            load=load,
            save=save,
            suffix="",
        )
    )


@hookimpl
def register_datasets(register):
    register(EXAMPLE_IMAGES)
