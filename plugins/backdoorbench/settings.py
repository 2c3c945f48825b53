"""A BackdoorBench defense's settings: its yaml file overlaid with the command line, as
BackdoorBench's defenses do (a value given on the command line wins; the yaml fills the rest)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from purify_backdoor.errors import PurifyError

# What BackdoorBench's defense configs (config/defense/ft/config.yaml) set and purify uses.
DEFAULTS = {"ratio": 0.05, "index": None, "device": "auto", "random_seed": 0, "dataset_path": None}


@dataclass(frozen=True)
class Settings:
    ratio: float
    index: Path | None  # a text file of clean train indices, one a line (BackdoorBench's --index)
    device: str
    random_seed: int
    dataset_path: Path | None  # BackdoorBench's data root (`./data`): the data is <it>/<dataset>


def config_file(root: Path, defense: str, dataset: str, given: Path | None) -> Path | None:
    """`--yaml_path`, else the defense's config for this data set, else its generic one, as
    BackdoorBench lays them out (`config/defense/<name>/<dataset>.yaml`, `.../config.yaml`)."""
    if given is not None:
        if not given.is_file():
            raise PurifyError(f"--yaml_path {given} does not exist; check the path")
        return given
    folder = root / "config" / "defense" / defense
    return next(
        (p for p in (folder / f"{dataset}.yaml", folder / "config.yaml") if p.is_file()), None
    )


def read_settings(path: Path | None, given: dict[str, Any]) -> Settings:
    """Defaults, then the yaml file's values, then the command line's (those not None)."""
    values = dict(DEFAULTS)
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise PurifyError(f"{path} is not valid yaml ({error}); fix or remove it") from None
        if not isinstance(loaded, dict):
            raise PurifyError(f"{path} is not a yaml mapping of settings; fix or remove it")
        values |= {key: value for key, value in loaded.items() if key in DEFAULTS}
    values |= {key: value for key, value in given.items() if value is not None}
    if values["device"] == "cuda" and not _has_cuda():
        values["device"] = "auto"  # BackdoorBench's configs say cuda; run where purify can
    try:
        return Settings(
            ratio=float(values["ratio"]),
            index=Path(values["index"]) if values["index"] else None,
            device=str(values["device"]),
            random_seed=int(values["random_seed"]),
            dataset_path=Path(values["dataset_path"]) if values["dataset_path"] else None,
        )
    except (TypeError, ValueError) as error:
        raise PurifyError(f"bad setting in {path or 'the command line'}: {error}") from None


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
