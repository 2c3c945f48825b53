"""The user's word on a model's input convention (`--normalize`, `--mean/--std`, `--bgr`,
`--input-scale`), for checkpoints that do not record it or record it wrongly: it replaces what the
adapter assumed, in front of the stored network."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from purify_backdoor.errors import PurifyError
from purify_backdoor.models.normalized import Normalized, unwrap
from purify_backdoor.plugin_types import LoadedModel

# Per-channel mean and std of the usual training pipelines, for `--normalize NAME`.
NORMALIZATIONS = {
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)),  # BackdoorBench, torchvision
    "cifar10-kuangliu": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "tiny": ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@dataclass(frozen=True)
class InputOverride:
    normalize: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    bgr: bool = False
    scale: float = 1.0  # 255: the network takes 0-255 values

    @property
    def given(self) -> bool:
        return bool(self.normalize or self.mean or self.std or self.bgr or self.scale != 1.0)


def parse_channels(text: str | None, flag: str) -> tuple[float, ...] | None:
    """ "0.5,0.5,0.5" -> (0.5, 0.5, 0.5); one value per RGB channel."""
    if text is None:
        return None
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise PurifyError(f"{flag} takes three comma-separated numbers (R,G,B), got '{text}'")
    return values


def apply_override(loaded: LoadedModel, override: InputOverride) -> LoadedModel:
    """The loaded model with the adapter's input wrapper replaced by the user's convention."""
    if not override.given:
        return loaded
    if override.normalize and (override.mean or override.std):
        raise PurifyError("--normalize and --mean/--std both given; keep one of them")
    if (override.mean is None) != (override.std is None):
        raise PurifyError("--mean and --std go together; give both")
    if override.normalize:
        if override.normalize not in NORMALIZATIONS:
            known = ", ".join(NORMALIZATIONS)
            raise PurifyError(f"unknown --normalize '{override.normalize}'; known: {known}")
        mean, std = NORMALIZATIONS[override.normalize]
    else:
        mean, std = override.mean or (0.0, 0.0, 0.0), override.std or (1.0, 1.0, 1.0)
    if any(value <= 0 for value in std):
        raise PurifyError(f"--std must be positive, got {std}")
    model = Normalized(unwrap(loaded.model), mean, std, bgr=override.bgr, scale=override.scale)
    convention = dataclasses.replace(
        loaded.convention,
        mean=mean,
        std=std,
        bgr=override.bgr,
        scale=override.scale,
        preprocessing=None,  # the format's own wrapper (a TrojAI crop) is replaced too
    )
    return dataclasses.replace(loaded, model=model.eval(), convention=convention)
