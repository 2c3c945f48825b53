"""How benchmark results name files: relative to the checkout (the shared data as ../shared/...),
so no result file holds an absolute path of the machine that made it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def portable(value: str | Path) -> str:
    path = Path(value)
    return os.path.relpath(path, ROOT) if path.is_absolute() else str(value)


def portable_command(arguments: Iterable[str]) -> str:
    """`purify ARGUMENTS`, as typed from the checkout root."""
    return " ".join(["purify", *(portable(argument) for argument in arguments)])
