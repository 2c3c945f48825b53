"""A model read with the wrong input convention (normalization, channel order, value range, crop)
still runs and still returns logits: only its accuracy gives it away. Before any defense, it is
measured on a few hundred of the user's clean images, and a score near chance stops the run.

Near chance is not the only sign: a zoo WRN-16-1 trained on mean/std-normalized inputs and read
as [0, 1] scores 23% on CIFAR-10, above the floor. So the input check also reads the stored
network the other standard ways (the `--normalize` table, BGR, 0-255) on the same images, and
compares with the accuracy the checkpoint records where it has one: a convention that scores
far higher than the one in use, or close to the recorded accuracy when the one in use is far
below it, stops the run with the flag that selects it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from purify_backdoor.data.imageset import ImageSet
from purify_backdoor.errors import PurifyError
from purify_backdoor.input_overrides import NORMALIZATIONS
from purify_backdoor.models.normalized import InputWrapper, Normalized, unwrap
from purify_backdoor.training import predict_logits

CHECK_IMAGES = 256
MIN_IMAGES = 20  # fewer cannot tell a working model from chance: measured, reported, not judged
# "Near chance": less than a tenth of the way from chance to perfect. 19% for 10 classes, 10.1%
# for 1000; a correctly read backdoored model scores far above it on clean images.
MARGIN = 0.1
FIX_HINT = (
    "the likely causes are normalization (--normalize NAME or --mean/--std), channel order "
    "(--bgr), value range (--input-scale 255) or crop (TrojAI: --trojai-round N)"
)
# "Far higher": another convention beats the one in use by at least FAR_GAIN and lies at least
# twice as far above chance. 20 points is over six standard errors of the difference between two
# accuracies on the same 256 images, so sampling noise never reaches it; doubling the distance
# from chance asks for a different kind of reading, not an edge: a correctly read model with a
# legitimately low accuracy (say 35%) would need a mismatched convention to reach 60%, and
# mismatched conventions only take accuracy away from a correctly read network.
FAR_GAIN = 0.20
# The measure may fall short of the recorded accuracy by this much for legitimate reasons: the
# record is on the original test set, the user's images may be JPEG or shifted (the shared NAD
# badnet model records 88.93% and scores 79.5% on the JPEG test set). A larger gap is reported,
# and stops the run when another convention comes within this gap of the record.
RECORD_GAP = 0.30
# Within this of the recorded accuracy the model is read as it was measured: no probes.
SKIP_GAP = 0.05
CLOSE = 0.05  # conventions this close to the best are named beside it


@dataclass(frozen=True)
class Convention:
    """A standard input convention, named by the flag that selects it (as `apply_override`
    builds it from that flag alone)."""

    flag: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    bgr: bool = False
    scale: float = 1.0

    def key(self) -> tuple[Any, ...]:
        return (*self.mean, *self.std, self.bgr, self.scale)


IDENTITY = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
CONVENTIONS = (
    *(Convention(f"--normalize {name}", *pair) for name, pair in NORMALIZATIONS.items()),
    Convention("--bgr", *IDENTITY, bgr=True),
    Convention("--input-scale 255", *IDENTITY, scale=255.0),
)


def accuracy_floor(num_classes: int) -> float:
    chance = 1.0 / num_classes
    return chance + MARGIN * (1.0 - chance)


def check_clean_accuracy(
    model: nn.Module, images: ImageSet, device: torch.device, seed: int, accept_low: bool = False
) -> dict[str, Any]:
    """The model's accuracy on up to CHECK_IMAGES seeded picks of `images`, as a report record;
    a PurifyError when it is near chance, unless `accept_low`."""
    picks = _picks(images, seed)
    record = _record(_accuracy(model, images, picks, device), len(picks), images.num_classes)
    record["accepted_low"] = accept_low and record["low"]
    if record["low"] and not accept_low:
        raise PurifyError(_near_chance(record, FIX_HINT))
    return record


def check_input_convention(
    model: nn.Module,
    images: ImageSet,
    device: torch.device,
    seed: int,
    accept_low: bool = False,
    recorded: float | None = None,
) -> dict[str, Any]:
    """`check_clean_accuracy` for a model about to be purified, with the other standard input
    conventions probed on the same images and the checkpoint's `recorded` accuracy (a fraction)
    compared: a PurifyError naming the flag of a far better convention, unless `accept_low`; a
    `warning` in the record when the measure is far below the record and nothing explains it."""
    picks = _picks(images, seed)
    measured = _accuracy(model, images, picks, device)
    record = _record(measured, len(picks), images.num_classes)
    skipped = _probes_skipped(measured, recorded, len(picks))
    probes = None if skipped else probe_conventions(model, images, picks, device)
    better = _better(measured, record["chance"], recorded, probes or {})
    far_below = recorded is not None and not skipped and recorded - measured > RECORD_GAP
    record |= {
        "recorded_acc": recorded,
        "probes": probes,
        "probes_skipped": skipped,
        "better": better,
        "warning": None,
        "accepted_low": accept_low and (record["low"] or better is not None),
    }
    if record["low"] and not accept_low:
        raise PurifyError(_near_chance(record, _suggestion(better, probes) if better else FIX_HINT))
    if better and not accept_low:
        raise PurifyError(_wrong_convention(record, better, probes or {}))
    if far_below and better is None:
        record["warning"] = (
            f"the model scores {_pct(measured)} on {len(picks)} of your clean images, far below "
            f"the {_pct(recorded)} its checkpoint records, and no standard input convention comes "
            f"close; check that the data is what it was trained on, and its input convention "
            f"(--normalize, --mean/--std, --bgr, --input-scale)"
        )
    return record


def probe_conventions(
    model: nn.Module, images: ImageSet, picks: np.ndarray, device: torch.device
) -> dict[str, float | None]:
    """Flag -> accuracy of the stored network read each standard way (the one in use left out:
    its score is the measure). None: the network cannot take the images that way (a shape it
    was not built for once its own wrapper, such as a TrojAI crop, is taken off)."""
    inner, in_use = unwrap(model), _convention_in_use(model)
    probes: dict[str, float | None] = {}
    for convention in CONVENTIONS:
        if in_use is not None and _same(convention.key(), in_use):
            continue
        wrapped = Normalized(
            inner, convention.mean, convention.std, bgr=convention.bgr, scale=convention.scale
        ).to(device)
        try:
            probes[convention.flag] = _accuracy(wrapped, images, picks, device)
        except RuntimeError:
            probes[convention.flag] = None
    return probes


def recorded_fraction(value: Any, percent: bool) -> float | None:
    """A checkpoint's recorded accuracy as a fraction in (0, 1], or None when it records none:
    a missing or non-numeric value, or 0 (what a fresh container holds before any measure)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return None
    fraction = float(value) / (100.0 if percent else 1.0)
    if not (math.isfinite(fraction) and 0.0 < fraction <= 1.0):
        return None
    return round(fraction, 6)  # 88.93 / 100 is 0.8893000000000001 in binary


def _picks(images: ImageSet, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).permutation(len(images))[:CHECK_IMAGES])


def _accuracy(model: nn.Module, images: ImageSet, picks: np.ndarray, device: torch.device) -> float:
    if not len(picks):
        return 0.0
    logits = predict_logits(model, images.images[picks], device)
    return float((logits.argmax(1).numpy() == images.labels[picks]).mean())


def _record(measured: float, count: int, num_classes: int) -> dict[str, Any]:
    floor = accuracy_floor(num_classes)
    return {
        "images": int(count),
        "clean_acc": measured,
        "chance": 1.0 / num_classes,
        "floor": floor,
        "low": measured < floor and count >= MIN_IMAGES,
    }


def _probes_skipped(measured: float, recorded: float | None, count: int) -> str | None:
    """Why the probes are not worth their ~8 forward passes, or None to run them. Above
    1 - FAR_GAIN no convention can beat the measure by FAR_GAIN, and the record cannot be more
    than RECORD_GAP above it; within SKIP_GAP of the record the model is read as it was when
    recorded. So a normal run pays nothing."""
    if count < MIN_IMAGES:
        return f"fewer than {MIN_IMAGES} images: measured, not judged"
    if measured > 1 - FAR_GAIN:
        return f"scores above {_pct(1 - FAR_GAIN)}: no convention can score far higher"
    if recorded is not None and measured >= recorded - SKIP_GAP:
        return f"within {round(100 * SKIP_GAP)} points of the accuracy its checkpoint records"
    return None


def _better(
    measured: float, chance: float, recorded: float | None, probes: dict[str, float | None]
) -> str | None:
    """The flag of a convention that reads the model far better than the one in use: FAR_GAIN
    higher and twice as far above chance, or (the measure being more than RECORD_GAP below the
    record) FAR_GAIN higher and within RECORD_GAP of the record."""
    scored = {flag: score for flag, score in probes.items() if score is not None}
    if not scored:
        return None
    flag = max(scored, key=lambda name: scored[name])
    best = scored[flag]
    if best - measured < FAR_GAIN:
        return None
    if best - chance >= 2 * (measured - chance):
        return flag
    if recorded is not None and recorded - measured > RECORD_GAP >= recorded - best:
        return flag
    return None


def _suggestion(better: str, probes: dict[str, float | None] | None) -> str:
    """'with --normalize imagenet it scores 94.1% (--normalize cifar10 93.8%)': the better flag,
    and the flags within CLOSE of it, since near-identical normalizations score alike."""
    scores = {flag: score for flag, score in (probes or {}).items() if score is not None}
    close = [
        f"{flag} {_pct(score)}"
        for flag, score in sorted(scores.items(), key=lambda item: -item[1])
        if flag != better and score >= scores[better] - CLOSE
    ]
    also = f" ({', '.join(close)})" if close else ""
    return f"with {better} it scores {_pct(scores[better])}{also}: pass {better}"


def _near_chance(record: dict[str, Any], hint: str) -> str:
    return (
        f"the model scores {_pct(record['clean_acc'])} on {record['images']} of your clean "
        f"images, near chance ({_pct(record['chance'])}), so it is probably reading them "
        f"wrongly; {hint}; --accept-low-accuracy runs anyway"
    )


def _wrong_convention(record: dict[str, Any], better: str, probes: dict[str, float | None]) -> str:
    recorded = record["recorded_acc"]
    against = "" if recorded is None else f" (its checkpoint records {_pct(recorded)})"
    return (
        f"the model scores {_pct(record['clean_acc'])} on {record['images']} of your clean "
        f"images{against}, so it is probably reading them with the wrong input convention; "
        f"{_suggestion(better, probes)}; --accept-low-accuracy runs anyway"
    )


def _convention_in_use(model: nn.Module) -> tuple[Any, ...] | None:
    """The convention `model` reads its input with, as a `Convention.key`; None for a wrapper of
    another kind (a TrojAI crop), which no probe reproduces."""
    if isinstance(model, Normalized):
        mean, std = model.mean.flatten().tolist(), model.std.flatten().tolist()
        return (*mean, *std, model.bgr, model.scale)
    if isinstance(model, InputWrapper):
        return None
    return (*IDENTITY[0], *IDENTITY[1], False, 1.0)


def _same(one: tuple[Any, ...], other: tuple[Any, ...]) -> bool:
    return len(one) == len(other) and bool(np.allclose(one, other))


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.1f}%"
