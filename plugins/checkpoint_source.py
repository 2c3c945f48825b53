"""A checkpoint file as adapters see it: read at most once, never by unpickling code, and checked
for the damage torch's own reader lets through."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

# numpy arrays and scalars are plain data; BackdoorBench records hold them (`bd_test`'s data_dict
# keys are np.int64). torch matches allowed globals by the dotted name in the pickle, and records
# written under numpy 1.x (BackdoorBench pins torch 1.11) spell the module `numpy.core`, not
# `numpy._core`: both spellings of exactly these two functions are allowed, nothing else of numpy.
_MULTIARRAY = np._core.multiarray
SAFE_NUMPY_GLOBALS = [
    _MULTIARRAY._reconstruct,
    _MULTIARRAY.scalar,
    (_MULTIARRAY._reconstruct, "numpy.core.multiarray._reconstruct"),
    (_MULTIARRAY.scalar, "numpy.core.multiarray.scalar"),
    np.ndarray,
    np.dtype,
    *(getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")),
]


class CheckpointSource:
    """A checkpoint path, read at most once. `payload()` never unpickles code: it uses
    `torch.load(weights_only=True)` (numpy arrays allowed); adapters that need more must check
    `trust`. `arch` and `trojai_round` are the user's flags, for adapters that need them."""

    def __init__(
        self,
        path: Path,
        trust: bool = False,
        arch: str | None = None,
        trojai_round: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.trust = trust
        self.arch = arch
        self.trojai_round = trojai_round
        self._payload: Any = None
        self._error: str | None = None
        self._read = False

    @property
    def is_torchscript(self) -> bool:
        """TorchScript archives are zip files with a code/ folder. `torch.load` would hand them to
        `torch.jit.load`, which runs their code, so they are never loaded by `payload()`."""
        if not (self.path.is_file() and zipfile.is_zipfile(self.path)):
            return False
        with zipfile.ZipFile(self.path) as archive:
            return any("/code/" in name for name in archive.namelist())

    @property
    def is_legacy(self) -> bool:
        """A torch file written before torch 1.6 (or with `_use_new_zipfile_serialization=False`):
        a bare pickle stream, not a zip archive. Adapters write such an input back the same way."""
        if not self.path.is_file():
            return False
        with self.path.open("rb") as handle:
            return handle.read(4) != b"PK\x03\x04" and self.payload() is not None

    def payload(self) -> Any:
        """The safely loaded object, or None when the file is not a weights-only torch file."""
        if not self._read:
            self._read = True
            damage = self._zip_damage()
            if damage:
                self._error = damage
            elif self.is_torchscript:
                self._error = "it is a TorchScript archive"
            elif self.path.is_file():
                try:
                    with torch.serialization.safe_globals(SAFE_NUMPY_GLOBALS):
                        self._payload = torch.load(self.path, map_location="cpu", weights_only=True)
                except Exception as error:  # noqa: BLE001 - any failure means "not this format"
                    self._error = _gist(error)
        return self._payload

    def _zip_damage(self) -> str | None:
        """torch's zip reader checks no CRCs, so flipped bytes inside a tensor would load as
        silently wrong weights; a zip file that does not open at all was cut short."""
        if not self.path.is_file():
            return None
        with self.path.open("rb") as handle:
            zipped = handle.read(4) == b"PK\x03\x04"
        if not zipped:
            return None
        try:
            with zipfile.ZipFile(self.path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
            return f"the file is truncated or damaged ({error})"
        return f"the file is corrupted (CRC mismatch in {bad})" if bad else None

    @property
    def load_error(self) -> str | None:
        self.payload()
        return self._error


WEIGHTS_ONLY_REFUSAL = "Weights only load failed"
UNPICKLER_DETAIL = re.compile(r"WeightsUnpickler error: (.*?)(?:\. Please|\n|$)")


def _gist(error: Exception) -> str:
    """One line for why torch would not load the file. Its weights-only refusal is a page of
    advice that ends in re-running with weights_only=False, which would run whatever code the
    file holds: what it means for a user of purify is said instead, with the object named."""
    message = str(error)
    if message.startswith(WEIGHTS_ONLY_REFUSAL):
        detail = UNPICKLER_DETAIL.search(message)
        named = f" ({detail.group(1).strip()[:120]})" if detail else ""
        return (
            f"it holds Python objects beyond tensors{named}, which would run code when loaded, "
            f"so purify does not unpickle them; if you trust the file, --trust-checkpoint "
            f"loads the formats that need it (TrojAI model folders, TorchScript)"
        )
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return f"{type(error).__name__}: {(lines or [''])[0][:200]}"


def write_torch_file(obj: Any, path: Path, legacy: bool = False) -> None:
    """`torch.save`, in the pre-1.6 format when the input came in it (`LoadedModel.legacy`), so a
    tool that reads only that format still reads the purified file."""
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
