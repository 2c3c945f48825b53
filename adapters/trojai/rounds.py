"""Which NIST TrojAI image-classification round a model folder comes from, told by the folder's
own files, and what that round feeds its models. Checked against usnistgov/trojai-example
(image-classification-feb2021 history for rounds 1-4, image-classification-sep2022 for round 11,
mitigation-image-classification-jun2024), usnistgov/trojai-round-generation and the rounds'
documentation pages."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from purify_backdoor import InputWrapper, PurifyError

CONFIG = "config.json"


@dataclass(frozen=True)
class RoundInput:
    """One round's preprocessing of a [0, 1] RGB image (as the example inference scripts do)."""

    image_size: int  # the example images' side
    crop: int | None  # centre crop to this side
    minmax: bool  # per-image min-max scaling instead of /255
    bgr: bool

    def describe(self) -> str:
        parts = ["BGR" if self.bgr else "RGB", "per-image min-max" if self.minmax else "/ 255"]
        crop = f"centre crop {self.crop} of {self.image_size}" if self.crop else "no crop"
        return ", ".join([*parts, crop])


ROUND_INPUTS = {
    "1": RoundInput(224, None, minmax=True, bgr=True),  # skimage, BGR stack, min-max
    "2": RoundInput(256, 224, minmax=True, bgr=False),
    "3": RoundInput(256, 224, minmax=False, bgr=False),  # "/255, matching ToTensor"
    "4": RoundInput(256, 224, minmax=False, bgr=False),
    "11": RoundInput(256, None, minmax=False, bgr=False),  # ConvertImageDtype, full image
    "mitigation": RoundInput(256, None, minmax=False, bgr=False),  # round 11's models
}
TROJAI_ROUNDS = tuple(ROUND_INPUTS)


class TrojAIInput(InputWrapper):
    def __init__(self, inner: torch.nn.Module, round_input: RoundInput) -> None:
        super().__init__(inner)
        self.round_input = round_input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.round_input
        if spec.crop:
            height, width = x.shape[-2:]
            top, left = max(0, (height - spec.crop) // 2), max(0, (width - spec.crop) // 2)
            x = x[..., top : top + spec.crop, left : left + spec.crop]
        if spec.bgr:
            x = x.flip(1)
        if spec.minmax:
            low = x.amin(dim=(1, 2, 3), keepdim=True)
            x = (x - low) / (x.amax(dim=(1, 2, 3), keepdim=True) - low).clamp_min(1e-12)
        return self.inner(x)


def plain_config(folder: Path) -> dict[str, Any] | None:
    """config.json as plain data. Rounds 4 and 11 write it with jsonpickle, whose decoder can run
    code: it is read with `json` and the `py/state` wrappers are opened by hand."""
    path = folder / CONFIG
    if not path.is_file():
        return None
    try:
        return _unwrap(json.loads(path.read_text()))
    except (ValueError, UnicodeDecodeError) as error:
        raise PurifyError(f"{path} is not valid JSON ({error}); check the model folder") from None


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        state = value.get("py/state")
        if isinstance(state, dict):
            return _unwrap(state)
        return {key: _unwrap(item) for key, item in value.items() if not key.startswith("py/")}
    if isinstance(value, list):
        return [_unwrap(item) for item in value]
    return value


def detect_round(folder: Path, config: dict[str, Any] | None) -> str | None:
    """The round, from the example folders' spelling and the config's schema."""
    hyphenated = ("clean-example-data", "poisoned-example-data", "new-clean-example-data")
    if any((folder / name).is_dir() for name in hyphenated):
        mitigation = ("test-example-data", "mitigate-example-data")
        return "mitigation" if any((folder / n).is_dir() for n in mitigation) else "11"
    if config is None:
        return "1" if (folder / "example_data").is_dir() else None
    if "NUMBER_CLASSES" in config:  # rounds 2 and 3: json.dump of an UPPERCASE dict
        if (folder / "clean_example_data").is_dir():
            return "3"
        return "2" if (folder / "example_data").is_dir() else None
    if "number_classes" in config and (folder / "clean_example_data").is_dir():
        return "4"
    return None


def chosen_round(folder: Path, config: dict[str, Any] | None, forced: str | None) -> str:
    if forced is not None and forced not in ROUND_INPUTS:
        raise PurifyError(f"unknown --trojai-round '{forced}'; known: {', '.join(TROJAI_ROUNDS)}")
    found = forced or detect_round(folder, config)
    if found is None:
        raise PurifyError(
            f"{folder} does not look like a TrojAI round purify knows (rounds "
            f"{', '.join(TROJAI_ROUNDS)}); force one with --trojai-round N"
        )
    return found


def class_count(config: dict[str, Any] | None) -> int | None:
    if not config:
        return None
    value = config.get("number_classes", config.get("NUMBER_CLASSES"))
    return int(value) if value is not None else None


def trigger_targets(config: dict[str, Any] | None) -> list[tuple[int, int]]:
    """(source class, target class) per trigger, in trigger order (round 4's `triggers`,
    round 11's trigger executors); rounds 2/3 name one target for all `TRIGGERED_CLASSES`."""
    if not config:
        return []
    triggers = config.get("triggers") or []
    pairs = [
        (int(t["source_class"]), int(t["target_class"]))
        for t in triggers
        if isinstance(t, dict) and t.get("source_class") is not None
    ]
    if pairs or config.get("TRIGGER_TARGET_CLASS") is None:
        return pairs
    target = int(config["TRIGGER_TARGET_CLASS"])
    return [(int(source), target) for source in config.get("TRIGGERED_CLASSES") or []]
