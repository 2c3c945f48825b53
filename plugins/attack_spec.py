"""Attack specs (`badnet:pattern=grid,target=5`), poisoning a training set, and the triggered test
set that ASR is measured on."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from purify_backdoor.data.imageset import ImageSet
from purify_backdoor.data.tensors import to_tensor
from purify_backdoor.errors import PurifyError
from purify_backdoor.manager import lookup
from purify_backdoor.options import Option, at_least, parse_assignments, resolve_options
from purify_backdoor.plugin_types import Attack, AttackSpec, RunContext, TriggeredSet
from purify_backdoor.training import BatchHook

COMMON_ATTACK_OPTIONS = (
    Option("target", int, 0, "target label of an all-to-one attack", bounds=at_least(0)),
    Option("all_to_all", bool, False, "all-to-all: a triggered image of class y goes to y+1"),
)


def attack_options(attack: Attack) -> tuple[Option, ...]:
    """What an attack accepts: the shared options, then its own."""
    return (*COMMON_ATTACK_OPTIONS, *attack.options)


def make_attack_spec(name: str, given: dict[str, Any]) -> AttackSpec:
    attack = lookup("attack", name)
    return AttackSpec(attack, resolve_options(attack_options(attack), given, f"attack '{name}'"))


def parse_attack_spec(text: str) -> AttackSpec:
    """`NAME` or `NAME:key=value,key=value`."""
    name, _, settings = text.partition(":")
    pairs = [part for part in settings.split(",") if part.strip()]
    return make_attack_spec(name.strip(), parse_assignments(pairs, what="--attack"))


def spec_from_record(record: dict[str, Any]) -> AttackSpec:
    """The attack stored in a checkpoint or report by `purify attack`."""
    return make_attack_spec(record["name"], record.get("options", {}))


def chosen_attack(text: str | None, stored: dict[str, Any] | None) -> AttackSpec | None:
    """The attack to measure: `--attack SPEC` if given, else the record stored in the checkpoint."""
    if text:
        return parse_attack_spec(text)
    return spec_from_record(stored) if stored else None


def spec_record(spec: AttackSpec) -> dict[str, Any]:
    return {"name": spec.attack.name, "options": dict(spec.options)}


def check_ratio(ratio: float) -> None:
    if not 0 <= ratio < 1:
        raise PurifyError(f"poisoning ratio must be in [0, 1), got {ratio}")


def eligible(spec: AttackSpec, labels: np.ndarray) -> np.ndarray:
    """Which images may be poisoned: clean-label attacks take target-class images (their labels
    stay), all-to-one attacks the others, all-to-all attacks any."""
    if spec.options["all_to_all"] and not spec.attack.clean_label:
        return np.ones(len(labels), dtype=bool)
    return (labels == spec.options["target"]) == spec.attack.clean_label


def poison_training_set(
    data: ImageSet,
    spec: AttackSpec,
    ratio: float,
    seed: int,
    context: RunContext | None = None,
    stamp: bool = True,
) -> tuple[ImageSet, np.ndarray]:
    """Stamp `ratio * N` images (poisoned / total, as BackdoorBench defines the ratio) and relabel
    them to the target; clean-label attacks pick target-class images and keep their labels. With
    `stamp=False` the chosen images are relabelled (and perturbed) but the trigger is left for
    `stamp_after_augment` to put on during training."""
    check_ratio(ratio)
    count = round(ratio * len(data))
    candidates = np.flatnonzero(eligible(spec, data.labels))
    if count > len(candidates):
        raise PurifyError(
            f"cannot poison {count} images: only {len(candidates)} are eligible; lower --ratio"
        )
    chosen = np.sort(np.random.default_rng(seed).choice(candidates, size=count, replace=False))
    images, labels = data.images.copy(), data.labels.copy()
    if count:
        if spec.attack.perturb is not None:
            context = context or RunContext(torch.device("cpu"), seed, quiet=True)
            images[chosen] = spec.attack.perturb(data, spec.options, chosen, context)
        if stamp:
            images[chosen] = spec.stamp(images[chosen])
        if not spec.attack.clean_label:
            labels[chosen] = spec.target_labels(labels[chosen], data.num_classes)
    return ImageSet(images, labels, data.classes), chosen


def _restamp(batch: torch.Tensor, rows: torch.Tensor, stamp) -> None:
    """Apply a uint8 trigger function to some rows of a float batch, in place."""
    pixels = (batch[rows] * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu()
    batch[rows] = to_tensor(stamp(pixels.numpy())).to(batch)


def stamp_after_augment(spec: AttackSpec, chosen: np.ndarray, count: int) -> BatchHook:
    """A `fit` hook that stamps the trigger on the chosen images of each augmented batch, so the
    trigger sits where it will at test time instead of being cropped off or flipped to another
    corner (what keeps a 12-epoch schedule from learning a 3x3 corner trigger)."""
    poisoned = torch.zeros(count, dtype=torch.bool)
    poisoned[torch.from_numpy(chosen)] = True

    def stamp(batch, labels, index, generator):
        rows = poisoned[index].nonzero().flatten()
        if len(rows):
            batch = batch.clone()
            _restamp(batch, rows, spec.stamp)
        return batch, labels

    return stamp


def poison_each_batch(spec: AttackSpec, ratio: float, num_classes: int) -> BatchHook:
    """A `fit` hook that poisons `ratio` of every batch afresh, as WaNet's training loop does: over
    the epochs nearly every training image is seen triggered, where a fixed poisoned set shows the
    same few images again and again. An attack with a noise mode (WaNet's) also gets
    `cross_ratio` noise images per poisoned one, which keep their labels."""
    check_ratio(ratio)
    attack, options = spec.attack, spec.options

    def poison(batch, labels, index, generator):
        order = torch.randperm(len(batch), generator=generator)
        allowed = torch.from_numpy(eligible(spec, labels.numpy()))
        rows = order[allowed[order]][: round(ratio * len(batch))]
        if len(rows) == 0:
            return batch, labels
        batch, labels = batch.clone(), labels.clone()
        _restamp(batch, rows, spec.stamp)
        if not attack.clean_label:
            labels[rows] = torch.from_numpy(spec.target_labels(labels[rows].numpy(), num_classes))
        if attack.noise is not None:
            cross = order[~torch.isin(order, rows)][: round(options["cross_ratio"] * len(rows))]
            if len(cross):
                _restamp(batch, cross, lambda images: attack.noise(images, options, generator))
        return batch, labels

    return poison


def triggered_test_set(test: ImageSet, spec: AttackSpec) -> TriggeredSet:
    """Triggered copies of the test images ASR counts (all-to-one: those whose true label is not
    the target), with their true labels and the labels the attacker wants."""
    keep = (
        np.arange(len(test))
        if spec.options["all_to_all"]
        else np.flatnonzero(test.labels != spec.options["target"])
    )
    labels = test.labels[keep]
    stamped = ImageSet(spec.stamp(test.images[keep]), labels, test.classes)
    return TriggeredSet(stamped, spec.target_labels(labels, test.num_classes))
