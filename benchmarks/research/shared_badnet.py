"""The shared NAD badnet checkpoint and its test sets, for the C&C benchmarks that score it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from purify_backdoor.attack_spec import parse_attack_spec, triggered_test_set
from purify_backdoor.checkpoints import open_checkpoint
from purify_backdoor.data.imageset import ImageSet
from purify_backdoor.data.loading import open_data
from purify_backdoor.plugin_types import TriggeredSet
from purify_backdoor.training import predict_logits

sys.path.append(str(Path(__file__).resolve().parents[1]))  # benchmarks/, for recorded.py
from recorded import ROOT, percent, portable  # noqa: E402, F401  (re-exported to the probes)

SHARED = ROOT.parent / "shared"
# The `cc` defaults these probes were run under, before the plugin followed the slides' order
# (docs/compact.md): fitted factors, synthesis through the original model, no fine-tuning.
EARLIER_CC = {
    "bases": "activations",
    "synthesis_model": "original",
    "synthesis_ce": 0.1,
    "label_source": "original",
    "epochs": 0,
}


SHARED_MODEL = SHARED / "checkpoints" / "nad-wrn16-1-badnet.pth.tar"


def load(
    count: int | None = None, checkpoint: Path = SHARED_MODEL
) -> tuple[nn.Module, ImageSet, TriggeredSet]:
    """The backdoored model (eval mode), the 10,000 JPEG test images (or `count` of them, drawn
    with seed 0) and their triggered copies. The trigger is the shared checkpoint's NAD grid,
    target 5, which the fast-profile badnet model (`-o pattern=grid`, target 5) shares."""
    _, loaded = open_checkpoint(checkpoint)
    test = open_data(SHARED / "data" / "cifar10-jpeg.tar.gz", quiet=True).test
    if count is not None:
        test = test.subset(np.random.default_rng(0).permutation(len(test.images))[:count])
    triggered = triggered_test_set(test, parse_attack_spec("badnet:pattern=grid,target=5"))
    return loaded.model.eval(), test, triggered


def score(network: nn.Module, test: ImageSet, triggered: TriggeredSet) -> dict[str, float]:
    device = torch.device("cpu")
    clean = predict_logits(network, test.images, device).argmax(1).numpy()
    backdoor = predict_logits(network, triggered.images.images, device).argmax(1).numpy()
    return {
        "clean_acc": float((clean == test.labels).mean()),
        "asr": float((backdoor == triggered.targets).mean()),
    }
