"""One BackdoorBench-style defense run: the record, its settings and clean data, `defend()`,
scores on the clean test set and the record's poisoned test images, and the defense folder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from torch import nn

from purify_backdoor.backdoorbench.clean_data import clean_indices, data_folder
from purify_backdoor.backdoorbench.outputs import DefenseFolder, write_results
from purify_backdoor.backdoorbench.settings import config_file, read_settings
from purify_backdoor.checkpoints import check_class_count, open_checkpoint
from purify_backdoor.data.loading import open_data
from purify_backdoor.errors import PurifyError
from purify_backdoor.in_memory import defend
from purify_backdoor.models.normalized import Normalized, unwrap
from purify_backdoor.plugin_types import LoadedModel
from purify_backdoor.purification import BROKEN_EXIT, UNCHANGED_EXIT, filed_name
from purify_backdoor.runtime import resolve_device
from purify_backdoor.stages import BROKEN, PURIFIED
from purify_backdoor.training import accuracy, predict_logits


def run_defense(
    root: Path,
    result_file: str,
    defense: str,
    options: dict[str, Any],
    given: dict[str, Any],
    data: Path | None = None,
    yaml_path: Path | None = None,
    overwrite: bool = False,
    accept_low_accuracy: bool = False,
    defense_name: str | None = None,
) -> int:
    """Purify `root/record/<result_file>/attack_result.pt` with `defense`; returns the exit
    status (0, or purify's 3 for unchanged and 4 for broken, which write nothing)."""
    record_folder = root / "record" / result_file
    if not (record_folder / "attack_result.pt").is_file():
        raise PurifyError(
            f"{record_folder}/attack_result.pt does not exist; run from the BackdoorBench "
            f"checkout that holds record/ and pass --result_file <attack folder>"
        )
    _, loaded = open_checkpoint(record_folder, "backdoorbench")
    dataset = loaded.container["clean_data"]
    settings = read_settings(config_file(root, defense, dataset, yaml_path), given)
    place = DefenseFolder.of(record_folder, filed_name(defense_name) or defense)
    place.check(overwrite)
    splits = open_data(data_folder(data, settings.dataset_path, dataset, loaded.data_path))
    if splits.train is None:
        raise PurifyError(f"the data for '{dataset}' has no train split to draw clean data from")
    classes = loaded.convention.num_classes
    check_class_count(splits.train.num_classes, classes, Path(dataset))
    indices = clean_indices(splits.train, settings.ratio, settings.index, settings.random_seed)
    clean = splits.train.subset(indices)
    test = splits.test
    mean, std = loaded.convention.mean, loaded.convention.std
    result = defend(
        unwrap(loaded.model), clean, None, defense, options,
        mean=mean, std=std, seed=settings.random_seed, device=settings.device,
        test=test, arch=loaded.arch, accept_low_accuracy=accept_low_accuracy,
    )  # fmt: skip
    if result.status != PURIFIED:
        print(f"purify: {defense} did not purify the model ({result.reason}); nothing written")
        return BROKEN_EXIT if result.status == BROKEN else UNCHANGED_EXIT
    place.prepare()
    model = Normalized(result.model, mean, std).eval()
    scores = score(model, loaded, test, resolve_device(settings.device))
    summary = {"defense": defense, "options": options, "settings": settings, "argv": sys.argv}
    write_results(place, loaded, result.model, scores, indices, result.report, summary)
    return 0


def score(model: nn.Module, loaded: LoadedModel, test: Any, device: Any) -> dict[str, float | None]:
    """BackdoorBench's three numbers, fractions: clean test accuracy, and on the record's
    poisoned test images the attack success rate and the robust (true label) accuracy."""
    model = model.to(device)
    scores: dict[str, float | None] = {"test_acc": None, "test_asr": None, "test_ra": None}
    if test is not None:
        scores["test_acc"] = accuracy(model, test, device)
    triggered = loaded.triggered
    if triggered is not None:
        predicted = predict_logits(model, triggered.images.images, device).argmax(1).numpy()
        scores["test_asr"] = float((predicted == triggered.targets).mean())
        scores["test_ra"] = float((predicted == triggered.images.labels).mean())
    return scores
