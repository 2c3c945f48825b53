"""A full disk is one line naming the folder and the space needed, not a traceback: torch reports
a short write as an obscure RuntimeError ("unexpected pos ..."), so a failed write is checked
against the free space of the folder it went to."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from torch import nn

from purify_backdoor.errors import PurifyError

FULL = (errno.ENOSPC, errno.EDQUOT)


def model_bytes(model: nn.Module) -> int:
    """The bytes of a model's tensors: about what one copy of it takes on disk."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def free_bytes(folder: Path) -> int:
    folder = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    return shutil.disk_usage(folder).free


@contextmanager
def out_of_space_is_one_line(folder: Path, needed: int, what: str) -> Iterator[None]:
    """A write inside that fails on a full disk (an ENOSPC error, or any write error while the
    folder has less than `needed` bytes free) becomes one PurifyError naming the folder."""
    try:
        yield
    except (OSError, RuntimeError) as error:
        full = isinstance(error, OSError) and error.errno in FULL
        free = free_bytes(folder)
        if not (full or free < needed):
            raise
        raise PurifyError(
            f"out of disk space in {folder}: {what} need about {needed:,} bytes and {free:,} are "
            f"free; free some space there (or write elsewhere with --out-dir) and re-run the same "
            f"command with --resume"
        ) from None
