"""numpy's module names inside a torch file's pickle. numpy 2 renamed `numpy.core` to
`numpy._core`, and a pickle names the module of every array and scalar it holds: a file written
under numpy 2 does not open under numpy 1 (`No module named 'numpy._core'`). A checkpoint that
came in with numpy-1 names (BackdoorBench's records, written by its torch 1.11 / numpy 1.x
stack) is written back with numpy-1 names, so the tools that wrote it still read it."""

from __future__ import annotations

import io
import pickletools
import zipfile
from pathlib import Path
from typing import Any

import torch

NUMPY2, NUMPY1 = "numpy._core", "numpy.core"
PICKLE = "/data.pkl"


def pickle_globals(path: Path) -> set[str]:
    """The `module name` of every GLOBAL opcode in a zip torch file's pickle; empty for any other
    file (a pre-1.6 torch file, a folder, a file that is not there)."""
    data = _pickle_bytes(path)
    if data is None:
        return set()
    return {str(arg) for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}


def names_numpy1(path: Path) -> bool:
    """Whether the file's pickle spells numpy's modules the numpy-1 way, and never the numpy-2
    way: only then is writing numpy-1 names back what the input's readers expect."""
    modules = {name.split(" ")[0] for name in pickle_globals(path)}
    return any(_is_under(m, NUMPY1) for m in modules) and not any(
        _is_under(m, NUMPY2) for m in modules
    )


def save_with_numpy1_names(obj: Any, path: Path) -> None:
    """`torch.save`, with every `numpy._core...` GLOBAL opcode renamed `numpy.core...`: the
    bytes torch 1.x / numpy 1.x would have written for the same object."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith(PICKLE):
                data = respelled(data)
            target.writestr(info, data, compress_type=zipfile.ZIP_STORED)


def respelled(data: bytes) -> bytes:
    """The pickle with each GLOBAL opcode's numpy-2 module renamed, opcode by opcode (never a
    search over the bytes, which could hit inside an array's raw data). torch pickles with
    protocol 2: no frames, memo by index, so opcodes can change length without fixing offsets."""
    pieces, start = [], 0
    for op, arg, position in pickletools.genops(data):
        if op.name in ("FRAME", "STACK_GLOBAL"):
            raise ValueError(f"pickle protocol with {op.name} is not rewritten; protocol 2 only")
        if op.name != "GLOBAL":
            continue
        module, name = str(arg).split(" ", 1)
        if not _is_under(module, NUMPY2):
            continue
        module = NUMPY1 + module[len(NUMPY2) :]
        end = data.index(b"\n", data.index(b"\n", position + 1) + 1) + 1
        pieces += [data[start:position], b"c" + f"{module}\n{name}\n".encode("ascii")]
        start = end
    return b"".join([*pieces, data[start:]])


def _is_under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _pickle_bytes(path: Path) -> bytes | None:
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        names = [name for name in archive.namelist() if name.endswith(PICKLE)]
        return archive.read(names[0]) if names else None
