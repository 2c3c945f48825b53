"""What a plugin registers, and what the host hands it when it runs.

Every registered thing is a frozen dataclass with a `name`, a one-line `description` and a tuple of
declared `options`; the host derives CLI flags, `-o key=value` parsing and help text from them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from purify_backdoor.figures import Figure
from purify_backdoor.options import Option

if TYPE_CHECKING:
    from purify_backdoor.checkpoint_source import CheckpointSource
    from purify_backdoor.data.imageset import ImageSet, Splits


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
    arch: str | None = None  # the registry architecture the adapter loaded, when it names one
    # suffix -> write(loaded input, path): extra files or folders the host writes atomically
    # beside the output (see Defense.extra_outputs), e.g. a second model format or trigger images.
    extra_outputs: dict[str, Callable[[LoadedModel, Path], None]] = field(default_factory=dict)
    # (status, reason) once the defense has said it leaves the model as it is; see leave_unchanged.
    unchanged: tuple[str, str] | None = None
    # name -> Figure: pictures of what the defense did, for the HTML report (see figures.py).
    figures: dict[str, Figure] = field(default_factory=dict)
    # Pictures that need a triggered image: (clean test images, the same images triggered, or
    # None when the attack is unknown) -> {name: Figure}. The host calls it after the defense
    # has run, only to draw the report; the defense itself never sees a triggered image.
    illustrate: Callable[[ImageSet, ImageSet | None], dict[str, Figure]] | None = None

    def leave_unchanged(self, status: str, reason: str) -> None:
        """Say the defense ends without changing the model (found no trigger, nothing crossed its
        pruning threshold), and return the model as it came. The host then writes no purified
        file (unless --write-unchanged), marks the report with `status` (e.g. "no trigger
        found") and `reason`, says so on stderr even under --quiet, and exits with status 3, so
        a script never takes an untouched model for a purified one."""
        self.unchanged = (status, reason)


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
    bgr: bool = False  # the network takes BGR
    scale: float = 1.0  # the network takes values in [0, scale]
    preprocessing: str | None = None  # anything else, in words (a TrojAI round's crop, min-max)

    def as_record(self) -> dict[str, Any]:
        """The convention as JSON: what a report says the model was fed, and what a safetensors
        file stores to feed it the same way again."""
        return {
            "size": list(self.size),
            "mean": list(self.mean) if self.mean else None,
            "std": list(self.std) if self.std else None,
            "bgr": self.bgr,
            "scale": self.scale,
            "preprocessing": self.preprocessing,
        }


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
    legacy: bool = False  # a pre-1.6 (non-zip) torch file: written back the same way
    # The clean accuracy the checkpoint itself records (NAD's best_clean_acc, BackdoorBench's
    # test_acc, TrojAI's stats), a fraction in [0, 1], measured on the original test set; the
    # input check compares it with what the model scores on the user's images. None: no record.
    recorded_accuracy: float | None = None
    # The input pickled numpy's modules under their numpy-1 names (`numpy.core`): writers that
    # pickle numpy objects write them back so, for readers still on numpy 1 (numpy_pickle.py).
    numpy1: bool = False
    # The clean data set the checkpoint names (BackdoorBench's `data_path`), when it exists on
    # this machine: the default for `--data`. None: the checkpoint names none, or it is not here.
    data_path: Path | None = None
    # The data set's name as the checkpoint records it (BackdoorBench's `clean_data`, `cifar10`):
    # `--data` naming a folder of data sets (BackdoorBench's `dataset_path`) reads that one.
    data_name: str | None = None


@dataclass(frozen=True)
class Adapter:
    """A checkpoint format. `detect` looks at content, never at the file name; `save` writes the
    purified model into `path` (a file, or a folder for folder formats) in the same container as
    the input; `companions` are further files the owning project reads beside it."""

    name: str
    description: str
    detect: Callable[[CheckpointSource], bool]
    load: Callable[[CheckpointSource], LoadedModel]
    save: Callable[[LoadedModel, nn.Module, Path], None]
    suffix: str
    options: tuple[Option, ...] = ()
    # Files written with the output, as paths relative to its folder; "{defense}" is replaced by
    # the defense's name. `save_companion(loaded, model, entry, path)` writes one of them.
    companions: tuple[str, ...] = ()
    save_companion: Callable[[LoadedModel, nn.Module, str, Path], None] | None = None
    # Where the purified model goes without --out, for a format whose project has a place for
    # it: `default_output(input path, defense name, output suffix)`. None: `<stem>.purified<ext>`
    # beside the input.
    default_output: Callable[[Path, str, str], Path] | None = None


@dataclass(frozen=True)
class DataFormat:
    """A data set layout on disk, for `--data`. `detect(path)` looks at the layout and content (a
    file's magic, the files a folder holds), never at the name alone, so a renamed data set still
    opens; `open(path, quiet)` reads it into training and test images. The host asks every
    format in turn (see `data.loading.open_data`) and extracts archives before asking."""

    name: str
    description: str
    detect: Callable[[Path], bool]
    open: Callable[[Path, bool], Splits]
    options: tuple[Option, ...] = ()
