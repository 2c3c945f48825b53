"""What is in a zoo: a folder whose entries are models (checkpoint files, TrojAI model folders,
BackdoorBench record folders; their formats are detected by content when each is purified), or a
manifest (CSV or JSONL) that lists them with per-model data, attack spec, format and arch."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from purify_backdoor.errors import PurifyError
from purify_backdoor.untrusted_files import is_plain_name

MANIFEST_SUFFIXES = (".csv", ".jsonl")
MANIFEST_KEYS = ("path", "name", "data", "attack", "format", "arch")
# Side files a zoo folder often holds beside its models (TrojAI's METADATA.csv, READMEs, logs).
SIDE_FILE_SUFFIXES = {
    ".json", ".jsonl", ".csv", ".md", ".txt", ".log", ".yaml", ".yml", ".toml", ".png", ".jpg",
    ".jpeg", ".html",
}  # fmt: skip
CHECKPOINT_SUFFIXES = (".pth.tar", ".safetensors", ".ckpt", ".pth", ".tar", ".pt", ".bin")
BACKDOORBENCH_RECORD = "attack_result.pt"


@dataclass(frozen=True)
class ZooModel:
    """One model of the zoo; fields left None take the zoo-wide flag (`--data`, `--attack`, ...)."""

    name: str
    path: Path
    data: Path | None = None
    attack: str | None = None
    format: str | None = None
    arch: str | None = None


def read_zoo(zoo: Path, exclude: Path | None = None) -> list[ZooModel]:
    """The zoo's models in a stable order, with unique names (they name the output folders).
    `exclude` is left out of a folder zoo: the output folder, when it lies inside the zoo."""
    zoo = Path(zoo)
    if not zoo.exists():
        raise PurifyError(f"zoo {zoo} does not exist; pass a folder of models or a manifest")
    if zoo.is_dir():
        models = _from_folder(zoo, exclude.resolve() if exclude else None)
    elif zoo.name.endswith(MANIFEST_SUFFIXES):
        models = _from_manifest(zoo)
    else:
        raise PurifyError(
            f"zoo {zoo} is neither a folder nor a manifest (.csv or .jsonl); "
            f"to purify one model use `purify --plugin NAME {zoo}`"
        )
    if not models:
        raise PurifyError(f"zoo {zoo} lists no models; add checkpoints or manifest rows")
    seen: dict[str, Path] = {}
    for model in models:
        if model.name in seen:
            raise PurifyError(
                f"zoo {zoo}: two models are named '{model.name}' ({seen[model.name]} and "
                f"{model.path}); give them distinct names (a manifest's `name` column)"
            )
        seen[model.name] = model.path
    return models


def model_name(path: Path) -> str:
    """`badnet.pth.tar` -> `badnet`; folders keep their name."""
    name = path.name
    if path.is_dir():
        return name
    for suffix in CHECKPOINT_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def check_name(name: str, where: str) -> None:
    """A model's name is its output folder's, under `--out`: one plain path component, so a
    manifest row cannot place (and, the zoo passing --overwrite, replace) files elsewhere: no
    separator (an absolute name starts with one), not `.` or `..`, no NUL."""
    if not is_plain_name(name):
        raise PurifyError(
            f"{where}: the name {name!r} is not a plain folder name (it names the model's output "
            f"folder under --out); use one path component, without / or \\, not . or .."
        )


def _from_folder(zoo: Path, exclude: Path | None) -> list[ZooModel]:
    models = []
    for entry in sorted(zoo.iterdir()):
        if entry.name.startswith(".") or (entry.is_file() and _is_side_file(entry)):
            continue
        if exclude is not None and entry.resolve() == exclude:
            continue
        path = entry / BACKDOORBENCH_RECORD if (entry / BACKDOORBENCH_RECORD).is_file() else entry
        name = model_name(entry)
        check_name(name, f"zoo {zoo}, entry {entry.name!r}")
        models.append(ZooModel(name=name, path=path))
    return models


def _is_side_file(path: Path) -> bool:
    return path.suffix.lower() in SIDE_FILE_SUFFIXES


def _from_manifest(manifest: Path) -> list[ZooModel]:
    rows = _manifest_rows(manifest)
    base = manifest.resolve().parent
    models = []
    for number, row in rows:
        where = f"manifest {manifest}, row {number}"
        if None in row:
            raise PurifyError(f"{where} has more fields than the header; quote commas in values")
        unknown = sorted(set(row) - set(MANIFEST_KEYS))
        if unknown:
            raise PurifyError(
                f"{where}: unknown column '{unknown[0]}'; allowed: {', '.join(MANIFEST_KEYS)}"
            )
        values = {key: str(value).strip() for key, value in row.items() if value not in (None, "")}
        if not values.get("path"):
            raise PurifyError(f"{where} has no `path`; every row names a model file or folder")
        path = base / values["path"]
        if path.is_dir() and (path / BACKDOORBENCH_RECORD).is_file():
            path = path / BACKDOORBENCH_RECORD
        name = values.get("name") or model_name(base / values["path"])
        check_name(name, where)
        models.append(
            ZooModel(
                name=name,
                path=path,
                data=base / values["data"] if "data" in values else None,
                attack=values.get("attack"),
                format=values.get("format"),
                arch=values.get("arch"),
            )
        )
    return models


def _manifest_rows(manifest: Path) -> list[tuple[int, dict]]:
    try:
        text = manifest.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise PurifyError(f"cannot read manifest {manifest} ({error}); check the file") from None
    if manifest.suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise PurifyError(
                f"manifest {manifest} has no `path` column; its first line is the header, "
                f"e.g. path,attack"
            )
        return [(number, row) for number, row in enumerate(reader, start=2)]
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise PurifyError(f"manifest {manifest}, line {number} is not JSON ({error})") from None
        if not isinstance(row, dict):
            raise PurifyError(f"manifest {manifest}, line {number} must be a JSON object")
        rows.append((number, row))
    return rows
