"""Finding the adapter for a checkpoint by its content, and naming and writing the output."""

from __future__ import annotations

import hashlib
from pathlib import Path

from torch import nn

from purify_backdoor.atomic import atomic_write
from purify_backdoor.checkpoint_source import CheckpointSource
from purify_backdoor.errors import PurifyError
from purify_backdoor.manager import collect, lookup
from purify_backdoor.plugin_types import Adapter, LoadedModel
from purify_backdoor.untrusted_files import regular_files


def open_checkpoint(
    path: Path,
    format: str = "auto",
    trust: bool = False,
    arch: str | None = None,
    trojai_round: str | None = None,
) -> tuple[Adapter, LoadedModel]:
    path = Path(path)
    if not path.exists():
        raise PurifyError(f"model file {path} does not exist; check the path")
    if path.is_file() and path.stat().st_size == 0:
        raise PurifyError(f"model file {path} is empty; download or copy it again")
    source = CheckpointSource(path, trust=trust, arch=arch, trojai_round=trojai_round)
    damage = source.load_error
    if damage and damage.startswith("the file is"):
        raise PurifyError(f"cannot read the checkpoint {path}: {damage}; download or copy it again")
    if format != "auto":
        adapter = lookup("adapter", format)
        if not _detects(adapter, source):
            raise PurifyError(
                f"{path} is not a '{format}' checkpoint{_why(source)}; try --format auto"
            )
        return adapter, _load(adapter, source)
    adapters = [entry.item for entry in collect("adapter").values()]
    for adapter in adapters:
        if _detects(adapter, source):
            return adapter, _load(adapter, source)
    names = ", ".join(adapter.name for adapter in adapters)
    raise PurifyError(
        f"cannot recognise the checkpoint {path}{_why(source)}; known formats: {names}; "
        f"force one with --format NAME"
    )


def _detects(adapter: Adapter, source: CheckpointSource) -> bool:
    """Detection looks into untrusted content: a detector tripping over it means "not mine"."""
    try:
        return bool(adapter.detect(source))
    except PurifyError:
        raise
    except Exception:  # noqa: BLE001
        return False


def _load(adapter: Adapter, source: CheckpointSource) -> LoadedModel:
    """A file that passes detection but holds malformed entries is an input error, not a crash."""
    try:
        loaded = adapter.load(source)
        loaded.legacy = source.is_legacy
        return loaded
    except PurifyError:
        raise
    except Exception as error:  # noqa: BLE001
        detail = " ".join(str(error).split())[:160]
        raise PurifyError(
            f"{source.path} looks like a '{adapter.name}' checkpoint but does not load "
            f"({type(error).__name__}: {detail}); check the file or force another --format"
        ) from None


def _why(source: CheckpointSource) -> str:
    error = source.load_error
    return f" (it does not load as a weights-only torch file: {error})" if error else ""


def default_output_path(model_path: Path, suffix: str, out_suffix: str | None = None) -> Path:
    """`<stem>.purified<ext>` beside the input, keeping its extension (nad.pth.tar ->
    nad.purified.pth.tar, model.pt -> model.purified.pt) unless another format's `out_suffix` is
    asked for (nad.pth.tar -> nad.purified.safetensors)."""
    stem, ext = _split_suffix(model_path, suffix)
    return model_path.with_name(f"{stem}.purified{out_suffix or ext}")


def default_output(model_path: Path, adapter: Adapter, writer: Adapter, defense: str) -> Path:
    """The output without --out: where the input's format keeps a defense's result when it has
    such a place (`Adapter.default_output`: BackdoorBench's record folder), else
    `default_output_path`."""
    if adapter.default_output is not None:
        return adapter.default_output(Path(model_path), defense, writer.suffix)
    return default_output_path(model_path, adapter.suffix, writer.suffix)


def sibling_path(path: Path, suffix: str, new_suffix: str) -> Path:
    """`path` with its format suffix replaced: out.pth.tar -> out.compact.pt."""
    return path.with_name(_split_suffix(path, suffix)[0] + new_suffix)


def _split_suffix(path: Path, suffix: str) -> tuple[str, str]:
    name = path.name
    ext = suffix if suffix and name.endswith(suffix) else path.suffix
    return (name[: len(name) - len(ext)] if ext else name), ext


def check_class_count(data_classes: int, model_classes: int, data: Path) -> None:
    if data_classes != model_classes:
        raise PurifyError(
            f"the model has {model_classes} classes but {data} has {data_classes}; "
            f"pass the data set the model was trained on"
        )


def check_output_path(
    out: Path, model_path: Path, overwrite: bool, make_parent: bool = False
) -> None:
    if out.resolve() == model_path.resolve():
        raise PurifyError(f"output {out} is the input model; choose another --out")
    if out.exists() and not overwrite:
        raise PurifyError(f"output {out} already exists; pass --overwrite or choose another --out")
    if not make_parent and not out.parent.is_dir():
        raise PurifyError(f"output folder {out.parent} does not exist; create it first")


def save_checkpoint(adapter: Adapter, loaded: LoadedModel, model: nn.Module, out: Path) -> None:
    atomic_write(out, lambda tmp: adapter.save(loaded, model, tmp))


def checkpoint_files(path: Path) -> list[Path]:
    """A checkpoint's files: itself, or every regular file of a folder format, in a stable order.
    Links and special files in a folder are left out, never followed: a link to /dev/zero would
    hash forever, one to a file elsewhere would size and hash that file."""
    return sorted(regular_files(path)) if path.is_dir() else [path]


def disk_bytes(path: Path) -> int:
    return sum(file.stat().st_size for file in checkpoint_files(path))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    for file in checkpoint_files(path):
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
