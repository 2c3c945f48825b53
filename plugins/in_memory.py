"""`defend()`: a defense on a model and arrays in memory, the BackdoorBench-style interface (numpy
uint8 NHWC images, int labels) for researchers who hold an `nn.Module` rather than a file. It
runs the same stages as `purify run` (stages.py), on a copy: the caller's model is never changed.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from purify_backdoor.attack_spec import parse_attack_spec
from purify_backdoor.data.imageset import ImageSet
from purify_backdoor.errors import PurifyError
from purify_backdoor.input_overrides import InputOverride, apply_override
from purify_backdoor.manager import registered
from purify_backdoor.models.normalized import unwrap
from purify_backdoor.models.registry import recognise_architecture
from purify_backdoor.options import resolve_options
from purify_backdoor.plugin_types import AttackSpec, InputConvention, LoadedModel
from purify_backdoor.runtime import run_context
from purify_backdoor.stages import DefenderData, run_stages

IN_MEMORY = "in-memory"  # the report's input format for a model handed over in memory


@dataclass(frozen=True)
class Purified:
    """What `defend()` returns. `model` is a new module of the caller's kind, taking the same
    input as the one given (a normalization wrapper purify added is taken off again); `status`
    is purified, unchanged (the defense found nothing to remove; `reason` says why) or broken
    (near chance on clean images: not a model to use); `metrics` are before and after on `test`
    (None without test data); `report` is the dict `purify run` writes as JSON."""

    model: nn.Module
    status: str
    reason: str | None
    metrics: dict[str, Any] | None
    report: dict[str, Any]


Data = ImageSet | tuple[np.ndarray, np.ndarray]


def defend(
    model: nn.Module,
    images: np.ndarray | ImageSet | None,
    labels: np.ndarray | Sequence[int] | None = None,
    defense: str = "medic",
    options: dict[str, Any] | None = None,
    *,
    normalize: str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    bgr: bool = False,
    input_scale: float = 1.0,
    seed: int = 0,
    device: str = "auto",
    attack: str | AttackSpec | None = None,
    test: Data | None = None,
    classes: Sequence[str] | None = None,
    arch: str | None = None,
    accept_low_accuracy: bool = False,
    quiet: bool = True,
    pictures: bool = False,
) -> Purified:
    """Purify `model` with `defense`, using `images`/`labels` as the defender's clean data, used
    as given (None for a data-free defense). `normalize` (a name, as `--normalize`) or
    `mean`/`std`, `bgr` and `input_scale` say what the model takes when that is not RGB in
    [0, 1]. `attack` (a spec such as "badnet:pattern=grid,target=5") and `test` (images and
    labels) give the metrics. `arch` names the registry architecture, for defenses that rebuild
    it (recognised from the weights when not given). Bad input raises `PurifyError` with the
    one-line message the CLI prints. `pictures` also draws the report's pictures."""
    context = run_context(seed, device, quiet)
    entry = registered("defense", defense)
    resolved = resolve_options(entry.item.options, options or {}, f"defense '{defense}'")
    if not isinstance(model, nn.Module):
        raise PurifyError(f"model must be a torch nn.Module, got {type(model).__name__}")
    clean = None if images is None else image_set(images, labels, classes, "images")
    if clean is None and entry.item.needs_data:
        raise PurifyError(f"defense '{defense}' needs clean data; pass images and labels")
    test_set = None
    if test is not None:
        names = classes or (None if clean is None else clean.classes)
        test_set = image_set(*_pair(test), names, "test")
    given = clean if clean is not None else test_set
    override = InputOverride(
        normalize=normalize,
        mean=None if mean is None else tuple(float(v) for v in mean),
        std=None if std is None else tuple(float(v) for v in std),
        bgr=bgr,
        scale=input_scale,
    )
    loaded = loaded_model(model, override, given, arch, context.device)
    num_classes = loaded.convention.num_classes
    for name, data in (("images", clean), ("test", test_set)):
        if data is not None and data.num_classes > num_classes:
            raise PurifyError(
                f"{name}: labels go up to {data.num_classes - 1} but the model has {num_classes} "
                f"outputs; pass the data the model was trained for"
            )
    spec = parse_attack_spec(attack) if isinstance(attack, str) else attack
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="purify-defend-") as workdir:
        context.workdir = Path(workdir) / "state"
        result = run_stages(
            entry,
            resolved,
            loaded,
            DefenderData(clean, test_set),
            spec,
            context,
            accept_low=accept_low_accuracy,
            pictures=pictures,
        )
    context.workdir = None
    report = result.report(
        {"path": None}, {"path": None, "format": None, "written": False}, [], None,
        time.perf_counter() - started,
    )  # fmt: skip
    verdict = result.verdict
    reason = verdict.reason
    if verdict.status != verdict.outcome:  # a defense's own unchanged status, e.g. "nothing pruned"
        reason = f"{verdict.status}: {verdict.reason}"
    returned = _as_given(result.model, loaded.model, model)
    return Purified(returned, verdict.outcome, reason, result.metrics, report)


def image_set(
    images: np.ndarray | ImageSet,
    labels: np.ndarray | Sequence[int] | None,
    classes: Sequence[str] | None,
    what: str,
) -> ImageSet:
    """Arrays as the host's image set, with the CLI's one-line errors for the wrong kind."""
    if isinstance(images, ImageSet):
        return images
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise PurifyError(
            f"{what} must be uint8 RGB of shape (N, H, W, 3), got {images.dtype} {images.shape}; "
            f"convert with (x * 255).round().astype(np.uint8) and move channels last"
        )
    if labels is None:
        raise PurifyError(f"{what} need labels: pass one int label per image")
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != len(images):
        raise PurifyError(
            f"{what}: {len(images)} images but labels of shape {labels.shape}; pass one label "
            f"per image"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise PurifyError(f"{what}: labels must be integers, got {labels.dtype}")
    if len(labels) == 0 or labels.min() < 0:
        raise PurifyError(f"{what}: labels must be class indices 0..K-1 and not empty")
    names = tuple(classes) if classes else tuple(str(k) for k in range(int(labels.max()) + 1))
    if labels.max() >= len(names):
        raise PurifyError(f"{what}: label {int(labels.max())} but only {len(names)} class names")
    return ImageSet(np.ascontiguousarray(images), labels.astype(np.int64), names)


def loaded_model(
    model: nn.Module,
    override: InputOverride,
    data: ImageSet | None,
    arch: str | None,
    device: torch.device,
) -> LoadedModel:
    """A copy of the caller's model, as an adapter would hand it to the stages: [0, 1] RGB
    input, its convention, and its architecture when the registry knows it."""
    network = copy.deepcopy(model).eval()
    size = data.size if data is not None else (32, 32)
    with torch.no_grad():
        probe = torch.zeros(1, 3, *size, device=next(network.parameters()).device)
        try:
            outputs = int(network(probe).shape[-1])
        except Exception as error:  # noqa: BLE001 - any failure of a user's forward
            raise PurifyError(
                f"the model does not take {size[0]}x{size[1]} RGB images "
                f"({type(error).__name__}: {error}); check the data and the model"
            ) from None
    loaded = LoadedModel(
        model=network,
        convention=InputConvention(size=size, num_classes=outputs),
        arch=arch or recognise_architecture(unwrap(network).state_dict()) or IN_MEMORY,
        format=IN_MEMORY,
    )
    return apply_override(loaded, override)


def _as_given(purified: nn.Module, wrapped: nn.Module, given: nn.Module) -> nn.Module:
    """The purified network without the input wrapper purify put around it, on the device the
    caller's model was on."""
    network = unwrap(purified) if wrapped is not unwrap(wrapped) else purified
    where = next(given.parameters(), None)
    return network.to(where.device) if where is not None else network


def _pair(data: Data) -> tuple[Any, Any]:
    if isinstance(data, ImageSet):
        return data, None
    images, labels = data
    return images, labels
