"""The grid file (TOML): which models, which defenses, which seeds, on which data. Paths are
relative to the grid file, so a grid and its checkpoints travel together.

    data = "../shared/data/cifar10-jpeg.tar.gz"
    ratio = 0.05
    seeds = [0]

    [models.shared-badnet]          # an existing checkpoint
    checkpoint = "model.pth.tar"
    attack = "badnet:pattern=grid,target=5"

    [models.blended]                # trained once by an attack plugin, cached in the output
    train = "blended"
    options = { target = 5 }

    [defenses.medic]                # the table key names the plugin unless `plugin` is given
    options = { epochs = 10 }

    [[more_seeds]]                  # more seeds for some cells only: the spread, at less cost
    seeds = [1]
    models = ["shared-badnet"]
    defenses = ["medic"]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from purify_backdoor.errors import PurifyError

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

MODEL_KEYS = {
    "checkpoint", "attack", "format", "arch", "train", "options", "profile", "poison_ratio",
    "epochs", "n_train", "seed", "accept_low_accuracy",
}  # fmt: skip
DEFENSE_KEYS = {"plugin", "options"}
GRID_KEYS = {"data", "ratio", "n_clean", "seeds", "models", "defenses", "more_seeds"}
MORE_SEEDS_KEYS = {"seeds", "models", "defenses"}


@dataclass(frozen=True)
class ModelSpec:
    """A checkpoint to purify: given (`checkpoint`) or trained by an attack plugin (`train`)."""

    name: str
    checkpoint: Path | None = None
    attack: str | None = None
    format: str = "auto"
    arch: str | None = None
    train: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    profile: str = "small"
    poison_ratio: float = 0.1
    epochs: int | None = None
    n_train: int | None = None
    seed: int = 0
    accept_low_accuracy: bool = False  # run cells on a model near chance (toy grids)


@dataclass(frozen=True)
class DefenseSpec:
    name: str
    plugin: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MoreSeeds:
    """Extra seeds for some models x defenses only (by name)."""

    seeds: tuple[int, ...]
    models: tuple[str, ...]
    defenses: tuple[str, ...]


@dataclass(frozen=True)
class Grid:
    path: Path
    data: Path
    ratio: float
    n_clean: int | None
    seeds: tuple[int, ...]
    models: tuple[ModelSpec, ...]
    defenses: tuple[DefenseSpec, ...]
    more_seeds: tuple[MoreSeeds, ...] = ()

    @property
    def folder(self) -> Path:
        """The grid file's folder: its relative paths, and its jobs' working folder, start here."""
        return self.path.resolve().parent


def load_grid(path: Path) -> Grid:
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise PurifyError(f"grid file {path} does not exist; pass a .toml grid file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise PurifyError(f"grid file {path} is not valid TOML ({error}); fix that line") from None
    _check_keys(raw, GRID_KEYS, f"grid {path}")
    for key in ("data", "models", "defenses"):
        if key not in raw:
            raise PurifyError(f"grid {path} has no `{key}`; add it (see `purify bench --help`)")
    base = path.resolve().parent
    models = tuple(_model(name, spec, base, path) for name, spec in raw["models"].items())
    defenses = tuple(_defense(name, spec, path) for name, spec in raw["defenses"].items())
    names = {"models": {m.name for m in models}, "defenses": {d.name for d in defenses}}
    more = raw.get("more_seeds", [])
    if not isinstance(more, list):
        raise PurifyError(f"grid {path}: write `more_seeds` as [[more_seeds]] tables")
    return Grid(
        path=path,
        data=base / raw["data"],
        ratio=float(raw.get("ratio", 0.05)),
        n_clean=raw.get("n_clean"),
        seeds=_seeds(raw.get("seeds", [0]), f"grid {path}"),
        models=models,
        defenses=defenses,
        more_seeds=tuple(_more_seeds(spec, names, f"grid {path}, more_seeds") for spec in more),
    )


def _seeds(seeds: Any, where: str) -> tuple[int, ...]:
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise PurifyError(f"{where}: `seeds` must be a list of integers, e.g. seeds = [0, 1]")
    return tuple(seeds)


def _more_seeds(spec: Any, names: dict[str, set[str]], where: str) -> MoreSeeds:
    _check_keys(spec, MORE_SEEDS_KEYS, where)
    picked = {}
    for key in ("models", "defenses"):
        chosen = spec.get(key)
        if not isinstance(chosen, list) or not chosen:
            raise PurifyError(f"{where}: give `{key}` as a list of the grid's {key} names")
        unknown = sorted(set(chosen) - names[key])
        if unknown:
            known = ", ".join(sorted(names[key]))
            raise PurifyError(f"{where}: no {key[:-1]} '{unknown[0]}' in the grid; known: {known}")
        picked[key] = tuple(chosen)
    return MoreSeeds(_seeds(spec.get("seeds"), where), picked["models"], picked["defenses"])


def _model(name: str, spec: dict[str, Any], base: Path, path: Path) -> ModelSpec:
    where = f"grid {path}, model '{name}'"
    _check_keys(spec, MODEL_KEYS, where)
    if ("checkpoint" in spec) == ("train" in spec):
        raise PurifyError(f"{where}: give exactly one of `checkpoint = PATH` or `train = ATTACK`")
    fields = dict(spec)
    if "checkpoint" in fields:
        fields["checkpoint"] = base / fields["checkpoint"]
    return ModelSpec(name=name, **fields)


def _defense(name: str, spec: dict[str, Any], path: Path) -> DefenseSpec:
    _check_keys(spec, DEFENSE_KEYS, f"grid {path}, defense '{name}'")
    return DefenseSpec(name=name, plugin=spec.get("plugin", name), options=spec.get("options", {}))


def _check_keys(table: Any, allowed: set[str], where: str) -> None:
    if not isinstance(table, dict):
        raise PurifyError(f"{where} must be a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        allowed_keys = ", ".join(sorted(allowed))
        raise PurifyError(f"{where}: unknown key '{unknown[0]}'; allowed: {allowed_keys}")
