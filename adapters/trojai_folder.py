"""NIST TrojAI model folders: `model.pt` (a whole pickled torchvision model), `config.json`, and
example images `class_<k>_example_<n>.png` in `clean_example_data/` or `example_data/`. Unpickling
runs code from the file, so loading needs `--trust-checkpoint`. Input convention of TrojAI's
round-4 inference script: RGB scaled to [0, 1], centre-cropped to 224 x 224."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

from purify_backdoor import (
    Adapter,
    CheckpointSource,
    InputConvention,
    LoadedModel,
    PurifyError,
    hookimpl,
)

MODEL_FILE = "model.pt"
CROP = 224


class CenterCropInput(nn.Module):
    """Crops inputs larger than the network's 224 x 224 at their centre, as TrojAI does."""

    def __init__(self, inner: nn.Module, size: int = CROP) -> None:
        super().__init__()
        self.inner = inner
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        top, left = max(0, (height - self.size) // 2), max(0, (width - self.size) // 2)
        return self.inner(x[..., top : top + self.size, left : left + self.size])


def detect(source: CheckpointSource) -> bool:
    return source.path.is_dir() and (source.path / MODEL_FILE).is_file()


def load(source: CheckpointSource) -> LoadedModel:
    model_file = source.path / MODEL_FILE
    if not source.trust:
        raise PurifyError(
            f"{model_file} is a whole pickled model (TrojAI); loading it runs code from the file. "
            f"Pass --trust-checkpoint only if you trust where it came from"
        )
    try:
        network = torch.load(model_file, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
        raise PurifyError(f"cannot load {model_file}: {type(error).__name__}: {error}") from None
    if not isinstance(network, nn.Module):
        raise PurifyError(f"{model_file} holds a {type(network).__name__}, not a torch model")
    network.eval()
    with torch.no_grad():
        classes = int(network(torch.zeros(1, 3, CROP, CROP)).shape[1])
    return LoadedModel(
        model=CenterCropInput(network),
        convention=InputConvention(size=(CROP, CROP), num_classes=classes),
        arch=type(network).__name__,
        format="trojai",
        container=source.path,
    )


def save(loaded: LoadedModel, model: nn.Module, path: Path) -> None:
    """A folder like the input: the purified `model.pt` and copies of the top-level files."""
    path.mkdir()
    for file in loaded.container.iterdir():
        if file.is_file() and file.name != MODEL_FILE:
            shutil.copy2(file, path / file.name)
    network = model.inner if isinstance(model, CenterCropInput) else model
    torch.save(network.cpu(), path / MODEL_FILE)


@hookimpl
def register_adapters(register):
    register(
        Adapter(
            name="trojai",
            description="NIST TrojAI model folder (model.pt + config.json); --trust-checkpoint",
            detect=detect,
            load=load,
            save=save,
            suffix="",
        )
    )
