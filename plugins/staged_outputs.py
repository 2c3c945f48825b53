"""A run's outputs appear together or not at all: each is written in full to a hidden temporary
path beside its target and flushed, and only when every one of them is written are they renamed
into place. A failure while writing (a full disk, a plugin's writer raising) leaves the output
folder as it was, and the run's work folder keeps the state a `--resume` continues from."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from purify_backdoor.atomic import fsync_entries, fsync_written


class StagedOutputs:
    """`stage(target, write)` writes one output to its temporary path and returns that path (so
    its digest can go into the report); `commit()` renames them all into place. Leaving the
    `with` block without a commit removes whatever was staged."""

    def __init__(self) -> None:
        self.staged: list[tuple[Path, Path]] = []
        self.made: list[Path] = []  # folders made for outputs, removed again if nothing lands

    def make_folder(self, folder: Path) -> None:
        """`folder` and its missing parents, for outputs written in subfolders (companions)."""
        missing = [f for f in (folder, *folder.parents) if not f.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        self.made += missing

    def stage(self, target: Path, write: Callable[[Path], None]) -> Path:
        tmp = target.with_name(f".{target.name}.staged-{os.getpid()}")
        self.staged.append((tmp, target))
        write(tmp)
        fsync_written(tmp)
        return tmp

    def commit(self) -> None:
        """Move every staged output into place; an existing target (`--overwrite`) is moved aside
        first and put back if a later rename fails, so a failure here also leaves things as
        they were."""
        moved: list[tuple[Path, Path]] = []
        placed: list[Path] = []
        try:
            for tmp, target in self.staged:
                if target.exists():
                    aside = target.with_name(f".{target.name}.old-{os.getpid()}")
                    target.rename(aside)
                    moved.append((aside, target))
                tmp.rename(target)
                placed.append(target)
        except BaseException:
            for target in placed:
                _remove(target)
            for aside, target in moved:
                aside.rename(target)
            raise
        self.staged, self.made = [], []
        for aside, _ in moved:
            _remove(aside)
        for folder in {target.parent for target in placed}:
            fsync_entries(folder)

    def __enter__(self) -> StagedOutputs:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for tmp, _ in self.staged:
            _remove(tmp)
        self.staged = []
        if kind is not None:
            for folder in self.made:  # deepest first: the list runs from a folder to its parents
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
