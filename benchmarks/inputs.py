"""What the benchmarks run on: the shared CIFAR-10 JPEG data and MEDIC checkpoint (../shared/,
see its README.md) and the fast-profile models that benchmarks/attacks_fast.py makes."""

from __future__ import annotations

import argparse
from pathlib import Path

from recorded import ROOT

SHARED = ROOT.parent / "shared"
SHARED_DATA = SHARED / "data" / "cifar10-jpeg.tar.gz"
SHARED_MODEL = SHARED / "checkpoints" / "nad-wrn16-1-badnet.pth.tar"
SHARED_ATTACK = "badnet:pattern=grid,target=5"  # the shared checkpoint's NAD grid trigger
FAST_MODELS = ROOT / "benchmarks" / "models" / "fast"


def add_input_arguments(parser: argparse.ArgumentParser, model: bool = True) -> None:
    """`--data` (and `--model`), defaulting to the shared data and checkpoint."""
    if model:
        parser.add_argument("--model", type=Path, default=SHARED_MODEL)
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
