"""Reading folders purify did not make. A model or data folder from elsewhere can hold symbolic
links (`leak.txt -> /etc/hostname`, `x.png -> /dev/zero`), fifos, devices or sockets. Following a
link reads a file outside the folder (and copies it into the output); reading a device or a fifo
never ends. So inside an input folder purify lists, hashes, copies and opens only regular files
and folders, told by `lstat`, and never follows a link; the path a user names itself may be a
link, since the user chose it."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import BinaryIO

from purify_backdoor.errors import PurifyError


def is_plain_name(name: str) -> bool:
    """A name from outside that becomes one path component (a zoo model's output folder, a
    defense's filed name): not empty, not `.` or `..`, no separator (an absolute name starts
    with one), no NUL; anything else could place files outside the folder meant."""
    return name not in ("", ".", "..") and not any(c in name for c in "/\\\0")


SPECIAL_KINDS = {
    stat.S_IFIFO: "a fifo",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}
# Refuse a link that replaced a listed file before it was opened, and keep the open of a fifo
# from waiting for a writer; 0 where the OS lacks the flag.
NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)
NON_BLOCKING = getattr(os, "O_NONBLOCK", 0)


def special_kind(path: Path) -> str | None:
    """What `path` is when it is neither a regular file nor a folder ("a symbolic link to X",
    "a fifo", ...), else None. Told by `lstat`: the link itself is looked at, never its target."""
    mode = path.lstat().st_mode
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISLNK(mode):
        return f"a symbolic link to {os.readlink(path)}"
    return SPECIAL_KINDS.get(stat.S_IFMT(mode), "not a regular file")


def refuse_special(path: Path) -> None:
    """One line naming `path` and the fix when it is a link or a special file."""
    kind = special_kind(path)
    if kind is None:
        return
    fix = "replace it with a copy of what it points to (cp -rL) or remove it"
    raise PurifyError(
        f"{path} is {kind}; purify never follows links or reads special files inside an input "
        f"folder; {fix if path.is_symlink() else 'remove it'}"
    )


def tree_entries(folder: Path) -> Iterator[tuple[Path, int]]:
    """Every entry under `folder` with its `lstat` mode, in a stable order; sub-folders are
    entered, links to folders are not."""
    with os.scandir(folder) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    for entry in entries:
        path, mode = Path(entry.path), entry.stat(follow_symlinks=False).st_mode
        yield path, mode
        if stat.S_ISDIR(mode):
            yield from tree_entries(path)


def regular_files(folder: Path) -> list[Path]:
    """The regular files under `folder`; links and special files are no part of it, as
    `copy_regular_tree` never copies them."""
    return [path for path, mode in tree_entries(folder) if stat.S_ISREG(mode)]


def refuse_specials_in(folder: Path) -> None:
    """Refuse the first link or special file anywhere under `folder`, before anything in it is
    read, so a refusal comes before the work and never after it."""
    for path, mode in tree_entries(folder):
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            refuse_special(path)


def open_regular(path: Path) -> BinaryIO:
    """`path` open for reading if it is a regular file. The check is on the opened file itself
    (`fstat`), so a link or fifo put in its place after it was listed is refused too; O_NONBLOCK
    keeps the open of a fifo from waiting for a writer."""
    try:
        descriptor = os.open(path, os.O_RDONLY | NO_FOLLOW | NON_BLOCKING)
    except OSError:
        refuse_special(path)  # a link gives ELOOP: name it as one
        raise
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        refuse_special(path)
        raise PurifyError(f"{path} is a folder, not a file; remove it or rename it")
    return os.fdopen(descriptor, "rb")


def copy_regular_tree(source: Path, target: Path, skip: Collection[str] = ()) -> None:
    """`shutil.copytree` for folders from elsewhere: folders and regular files are copied (with
    their times and permissions), a link or special file is refused, never followed; top-level
    names in `skip` are left out."""
    target.mkdir()
    with os.scandir(source) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    for entry in (entry for entry in entries if entry.name not in skip):
        path, copy = Path(entry.path), target / entry.name
        if entry.is_dir(follow_symlinks=False):
            copy_regular_tree(path, copy)
            continue
        with open_regular(path) as reader, copy.open("xb") as writer:
            shutil.copyfileobj(reader, writer)
        shutil.copystat(path, copy, follow_symlinks=False)
    shutil.copystat(source, target)
