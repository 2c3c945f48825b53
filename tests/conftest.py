"""Small data and checkpoints the tests make themselves; nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from purify_backdoor.data.synthetic import synthetic_images
from purify_backdoor.models.wideresnet import WideResNet

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Decoded-image and extraction caches go to a per-session temp folder."""
    monkeypatch.setenv("PURIFY_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session", autouse=True)
def untrained_models_run():
    """Most tests purify untrained tiny models, which score at chance by design: the CLI's
    low-accuracy stop is turned off for them (and the jobs they start) through its environment
    variable. Tests of the check itself turn it back on with `low_accuracy_check_on`."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PURIFY_ACCEPT_LOW_ACCURACY", "1")
        yield


@pytest.fixture
def low_accuracy_check_on(monkeypatch):
    """The low-accuracy check as users get it (`untrained_models_run` turns it off)."""
    monkeypatch.delenv("PURIFY_ACCEPT_LOW_ACCURACY", raising=False)


def write_image_folder(root: Path, count: int, seed: int) -> None:
    data = synthetic_images(count, 16, seed)
    for index, (image, label) in enumerate(zip(data.images, data.labels, strict=True)):
        folder = root / data.classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:04d}.png")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """ImageFolder layout with train/ (200 images) and test/ (100), 16x16, 10 classes."""
    root = tmp_path_factory.mktemp("data") / "tiny"
    write_image_folder(root / "train", 200, seed=0)
    write_image_folder(root / "test", 100, seed=1)
    return root


def tiny_wideresnet(seed: int = 0) -> WideResNet:
    torch.manual_seed(seed)
    return WideResNet(depth=10, widen_factor=1, num_classes=10).eval()


@pytest.fixture
def nad_checkpoint(tmp_path) -> Path:
    """A NAD-format container around a randomly initialised WRN-10-1."""
    path = tmp_path / "model.pth.tar"
    state = {key: value.clone() for key, value in tiny_wideresnet().state_dict().items()}
    torch.save(
        {"epoch": 3, "state_dict": state, "best_clean_acc": 10.0, "best_bad_acc": 10.0}, path
    )
    return path
