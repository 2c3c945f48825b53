"""What a plugin registers, and what the host hands it when it runs.

Every registered thing is a frozen dataclass with a `name`, a one-line `description` and a tuple of
declared `options`; the host derives CLI flags, `-o key=value` parsing and help text from them.
"""

from __future__ import annotations

import sys
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from plugins.options import Option

if TYPE_CHECKING:
    from plugins.data.imageset import ImageSet


@dataclass
class RunContext:
    """Where and how plugin work runs: device, seed, progress, and a folder for resumable state."""

    device: torch.device
    seed: int
    quiet: bool = False
    workdir: Path | None = None
    resume: bool = False

    def progress(self, iterable: Iterable | None = None, **kwargs: Any) -> tqdm:
        """A progress bar (rate and ETA) on stderr that `--quiet` silences."""
        return tqdm(
            iterable, disable=self.quiet, dynamic_ncols=True, leave=False, file=sys.stderr, **kwargs
        )

    def log(self, message: str) -> None:
        if not self.quiet:
            tqdm.write(message, file=sys.stderr)

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU generator seeded from the run seed; `offset` separates independent streams."""
        return torch.Generator().manual_seed(self.seed + offset)


@dataclass
class DefenseJob:
    """Everything a defense gets. `model` takes RGB float images in [0, 1], NCHW; `clean` is the
    clean subset the defender holds (None for data-free defenses). Put anything worth reporting in
    `details`."""

    model: nn.Module
    clean: ImageSet | None
    num_classes: int
    options: dict[str, Any]
    context: RunContext
    details: dict[str, Any] = field(default_factory=dict)
    input_size: tuple[int, int] = (32, 32)  # what data-free defenses synthesise
    # suffix -> write(loaded input, path): extra files or folders the host writes atomically
    # beside the output (see Defense.extra_outputs), e.g. a second model format or trigger images.
    extra_outputs: dict[str, Callable[[LoadedModel, Path], None]] = field(default_factory=dict)


@dataclass(frozen=True)
class Defense:
    """A backdoor removal method. `run(job)` returns the purified model (same input convention)."""

    name: str
    description: str
    run: Callable[[DefenseJob], nn.Module]
    options: tuple[Option, ...] = ()
    needs_data: bool = True
    # Suffixes of extra outputs written beside the output (`<stem><suffix>`) from what `run` puts
    # in `DefenseJob.extra_outputs`; declared so the host checks the paths before any work.
    extra_outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Attack:
    """A backdoor trigger. `stamp(images, options)` takes and returns uint8 NHWC arrays. The host
    adds the options every attack shares (`target`, `all_to_all`) and does the poisoning and
    relabelling; `clean_label` attacks poison only target-class images and keep their labels."""

    name: str
    description: str
    stamp: Callable[[np.ndarray, dict[str, Any]], np.ndarray]
    options: tuple[Option, ...] = ()
    clean_label: bool = False
    # Poison a fresh share of every training batch instead of a fixed set of images, as WaNet's own
    # training loop (and BackdoorBench's for WaNet) does.
    poison_each_batch: bool = False
    # Noise mode of a per-batch attack (WaNet): (uint8 NHWC images, options, torch.Generator) ->
    # images that keep their labels, `options["cross_ratio"]` of them per poisoned image.
    noise: Callable[[np.ndarray, dict[str, Any], torch.Generator], np.ndarray] | None = None
    # A change to the chosen images before the trigger is stamped (the label-consistent attack's
    # adversarial perturbation): (training set, options, chosen indices, RunContext) -> images.
    perturb: Callable[..., np.ndarray] | None = None


@dataclass(frozen=True)
class AttackSpec:
    """An attack with its resolved options, e.g. parsed from `badnet:pattern=grid,target=5`."""

    attack: Attack
    options: dict[str, Any]

    def stamp(self, images: np.ndarray) -> np.ndarray:
        return self.attack.stamp(images, self.options)

    def target_labels(self, labels: np.ndarray, num_classes: int) -> np.ndarray:
        """The label a triggered image should get: all-to-one `target`, or all-to-all y+1 mod K."""
        if self.options["all_to_all"]:
            return (labels + 1) % num_classes
        return np.full_like(labels, self.options["target"])

    def as_text(self) -> str:
        settings = ",".join(f"{key}={value}" for key, value in sorted(self.options.items()))
        return f"{self.attack.name}:{settings}"


@dataclass(frozen=True)
class TriggeredSet:
    """Triggered test images with their true labels (`images.labels`) and the labels the attacker
    wants (`targets`): made from an attack spec, or stored with a checkpoint (BackdoorBench)."""

    images: ImageSet
    targets: np.ndarray


@dataclass
class EvalJob:
    """What an evaluator gets: the model under test, test data, the backdoor (as an attack spec
    and/or a triggered test set) when known, and the original model when comparing against it.
    `reference_logits`, when given, are the original model's logits on `test`: the host caches
    them across runs, so evaluators comparing against the original need not recompute them."""

    model: nn.Module
    test: ImageSet
    attack: AttackSpec | None
    context: RunContext
    reference: nn.Module | None = None
    triggered: TriggeredSet | None = None
    reference_logits: torch.Tensor | None = None


@dataclass(frozen=True)
class Evaluator:
    """Turns a model and test data into named metrics (fractions in [0, 1], counts, bytes...)."""

    name: str
    description: str
    evaluate: Callable[[EvalJob], dict[str, float]]
    options: tuple[Option, ...] = ()


@dataclass(frozen=True)
class InputConvention:
    """What the stored network expects; adapters hide it behind a [0, 1] RGB interface."""

    size: tuple[int, int]
    num_classes: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


@dataclass
class LoadedModel:
    """A checkpoint as loaded: the model ([0, 1] RGB input), its convention and architecture
    name, and the original container, kept so `save` writes a drop-in file with the same keys."""

    model: nn.Module
    convention: InputConvention
    arch: str
    format: str
    container: Any = None
    attack: dict[str, Any] | None = None
    triggered: TriggeredSet | None = None


# numpy arrays are plain data; BackdoorBench records hold them. torch documents this allow-list.
SAFE_NUMPY_GLOBALS = [
    np._core.multiarray._reconstruct,
    np.ndarray,
    np.dtype,
    *(getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")),
]


class CheckpointSource:
    """A checkpoint path, read at most once. `payload()` never unpickles code: it uses
    `torch.load(weights_only=True)` (numpy arrays allowed); adapters that need more must check
    `trust`."""

    def __init__(self, path: Path, trust: bool = False, arch: str | None = None) -> None:
        self.path = Path(path)
        self.trust = trust
        self.arch = arch
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
                    first = (str(error).splitlines() or [""])[0][:200]
                    self._error = f"{type(error).__name__}: {first}"
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


@dataclass(frozen=True)
class Adapter:
    """A checkpoint format. `detect` looks at content, never at the file name; `save` writes the
    purified model into `path` (a file, or a folder for folder formats) in the same container as
    the input, plus any `companions` beside it."""

    name: str
    description: str
    detect: Callable[[CheckpointSource], bool]
    load: Callable[[CheckpointSource], LoadedModel]
    save: Callable[[LoadedModel, nn.Module, Path], None]
    suffix: str
    options: tuple[Option, ...] = ()
    companions: tuple[str, ...] = ()  # files `save` also writes beside the output
