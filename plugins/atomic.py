"""Atomic output: write to a temporary file beside the target, fsync, then rename over it, so a
crash leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_entries(folder: Path) -> None:
    """Flush a folder's entries (names renamed into it), not the files below it."""
    _fsync(folder)


def fsync_written(path: Path) -> None:
    """Flush a written file, or every file of a written folder and the folder's entries."""
    if path.is_dir():
        for file in (p for p in path.rglob("*") if p.is_file()):
            _fsync(file)
    _fsync(path)


def atomic_write(path: Path, write: Callable[[Path], None], suffix: str = "") -> None:
    """`write(tmp)` fills a temporary path (ending in `suffix`, for writers that insist on one);
    it may make a file or, for folder formats, a folder."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    try:
        write(tmp)
        if tmp.is_dir():
            for file in (p for p in tmp.rglob("*") if p.is_file()):
                _fsync(file)
            if path.is_dir():
                path.rename(old)  # a folder cannot be replaced in one step; keep it until done
        else:
            _fsync(tmp)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, old):
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink(missing_ok=True)
    _fsync(path.parent)


def report_json(data: Any) -> str:
    """JSON as every report and record is written: indented, values it cannot encode as text."""
    return json.dumps(data, indent=2, default=str) + "\n"


def write_json_atomic(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(report_json(data)))


def write_csv_atomic(path: Path, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda tmp: tmp.write_text(buffer.getvalue()))
