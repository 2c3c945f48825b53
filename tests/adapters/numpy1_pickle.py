"""Torch files as torch 1.x / numpy 1.x write them (BackdoorBench's records): the same pickle as
numpy 2 writes, with the GLOBAL opcodes naming `numpy.core.multiarray` instead of
`numpy._core.multiarray`. `pickle_globals` checks the result opcode by opcode."""

from __future__ import annotations

import io
import pickletools
import zipfile
from pathlib import Path
from typing import Any

import torch

NUMPY2, NUMPY1 = b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"


def save_as_numpy1(obj: Any, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("/data.pkl"):
                data = data.replace(NUMPY2, NUMPY1)
            target.writestr(info, data, compress_type=zipfile.ZIP_STORED)


def pickle_globals(path: Path) -> set[str]:
    """The `module name` of every GLOBAL opcode in the file's pickle."""
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
        data = archive.read(name)
    return {arg for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}
