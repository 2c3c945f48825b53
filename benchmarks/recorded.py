"""How benchmark results name files: relative to the checkout (the shared data as ../shared/...),
so no result file holds an absolute path of the machine that made it."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def portable(value: str | Path) -> str:
    path = Path(value)
    return os.path.relpath(path, ROOT) if path.is_absolute() else str(value)


def portable_command(arguments: Iterable[str]) -> str:
    """`purify ARGUMENTS`, as typed from the checkout root."""
    return " ".join(["purify", *(portable(argument) for argument in arguments)])


def machine() -> str:
    """The machine a result was measured on, in words."""
    return f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), no GPU"


def percent(value: float | None) -> float | None:
    """A fraction as the percent the result files hold, to two decimals."""
    return None if value is None else round(100 * value, 2)
