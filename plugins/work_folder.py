"""The folder of resumable state beside a run's output (`<output>.work/`): held by one run at a
time, and stamped with what that run was started from, so `--resume` continues only the run it
belongs to. Two runs on one output would otherwise share (and the first to finish delete) one
folder, and a model replaced under the same name would be "purified" from the old one's state."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from purify_backdoor.atomic import write_json_atomic
from purify_backdoor.errors import PurifyError
from purify_backdoor.report import package_versions

if TYPE_CHECKING:
    from purify_backdoor.data.imageset import ImageSet
    from purify_backdoor.plugin_types import LoadedModel

LOCK = "lock"  # holds the pid of the run that holds the folder
RECORD = "started-from.json"
# Set by the executors in every job they start (`purify zoo`, `purify bench`). Such a job's
# --resume is the driver's, added because a work folder exists: a folder left by another input
# or other settings is cleared and the job starts afresh, where a user's --resume refuses.
JOB_ENV = "PURIFY_JOB"
VERSIONED = ("purify-backdoor", "torch")


def defense_record(
    plugin: str,
    options: dict[str, Any],
    input_sha256: str,
    loaded: LoadedModel,
    clean: ImageSet | None,
    test: ImageSet | None,
    seed: int,
) -> dict[str, Any]:
    """What a defense run's state depends on: the input file, how it was read, the defense and
    its resolved options, the defender's data by content, the seed and the code."""
    return started_from(
        command="run",
        plugin=plugin,
        options=options,
        input_sha256=input_sha256,
        format=loaded.format,
        arch=loaded.arch,
        convention=loaded.convention.as_record(),
        clean_data=None if clean is None else clean.fingerprint(),
        test_data=None if test is None else test.fingerprint(),
        seed=seed,
    )


def started_from(**fields: Any) -> dict[str, Any]:
    """A record as JSON reads it back (tuples become lists), with the versions of the code whose
    state it describes: a state saved by other code is not resumed."""
    versions = package_versions()
    fields["versions"] = {name: versions[name] for name in VERSIONED}
    return json.loads(json.dumps(fields, default=str))


@contextmanager
def held_work_folder(workdir: Path, record: dict[str, Any], resume: bool) -> Iterator[Path]:
    """Hold `workdir` for the whole run: exclusively (another run on the same output is refused,
    naming its pid; the OS drops the lock when the holder exits, even on SIGKILL), and stamped
    with `record` (what `--resume` checks). A folder left with no state in it (a refused input,
    an error before the first saved step) is removed on the way out."""
    descriptor = lock_folder(workdir)
    try:
        prepare(workdir, record, resume, os.environ.get(JOB_ENV) == "1")
        yield workdir
    finally:
        discard_if_stateless(workdir)
        os.close(descriptor)


def lock_folder(workdir: Path) -> int:
    """Create the folder if needed and take its lock; returns the lock's descriptor. A holder
    removes the folder (and the lock file) at its end while still holding it, so a lock taken
    on a file that is no longer the folder's is taken again, on the new one."""
    while True:
        workdir.mkdir(exist_ok=True)
        try:
            descriptor = os.open(workdir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # removed between mkdir and open
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
            os.close(descriptor)
            raise PurifyError(
                f"another purify run (pid {holder or 'unknown'}) is writing this output: it "
                f"holds {workdir}; wait for it to end, or choose another output"
            ) from None
        if current_lock(workdir, descriptor):
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
            return descriptor
        os.close(descriptor)


def current_lock(workdir: Path, descriptor: int) -> bool:
    """Whether the locked file is still the folder's lock file (not one removed meanwhile)."""
    try:
        found = os.stat(workdir / LOCK)
    except FileNotFoundError:
        return False
    held = os.fstat(descriptor)
    return (found.st_dev, found.st_ino) == (held.st_dev, held.st_ino)


def prepare(workdir: Path, record: dict[str, Any], resume: bool, driven: bool) -> None:
    """Leave in the folder only state that belongs to this run, and the record that says so. A
    run without --resume starts afresh; --resume keeps state whose record matches. State from
    another run is refused (one line: what differs, and the fix), or, in a zoo or bench job,
    cleared with a line in the job's log."""
    if resume and holds_state(workdir):
        differs = differences(read_record(workdir), record)
        if not differs:
            return
        if not driven:
            raise PurifyError(
                f"--resume: {workdir} holds the state of another run ({differs}); delete that "
                f"folder to start afresh, or drop --resume"
            )
        click.echo(
            f"purify: {workdir} holds the state of another run ({differs}); starting afresh",
            err=True,
        )
    clear(workdir)
    write_record(workdir, record)


def differences(found: dict[str, Any] | None, record: dict[str, Any]) -> str:
    """What differs between the folder's record and this run's, in words ('' when nothing)."""
    if found is None:
        return "it has no record of what it was started from: an older purify made it"
    keys = sorted(key for key in set(found) | set(record) if found.get(key) != record.get(key))
    if not keys:
        return ""
    return "started from another " + ", ".join(keys)


def read_record(workdir: Path) -> dict[str, Any] | None:
    try:
        found = json.loads((workdir / RECORD).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return found if isinstance(found, dict) else None


def write_record(workdir: Path, record: dict[str, Any]) -> None:
    """Atomically: a run killed while writing it leaves the old record or none, never half."""
    write_json_atomic(workdir / RECORD, record)


def holds_state(workdir: Path) -> bool:
    """Anything saved by a run: every entry but the lock and the record."""
    return any(entry.name not in (LOCK, RECORD) for entry in workdir.iterdir())


def clear(workdir: Path) -> None:
    """Empty the folder but for its lock, which this run holds."""
    for entry in workdir.iterdir():
        if entry.name == LOCK:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def discard_if_stateless(workdir: Path) -> None:
    """A folder with nothing saved in it would only make drivers add --resume: removed, the lock
    file last (still held: a run that opened it meanwhile sees it gone and takes a new one)."""
    if not workdir.is_dir() or holds_state(workdir):
        return
    (workdir / RECORD).unlink(missing_ok=True)
    (workdir / LOCK).unlink(missing_ok=True)
    with suppress(OSError):  # another run made its lock file in it meanwhile: the folder is its
        workdir.rmdir()
