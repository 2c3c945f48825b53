"""What the benchmarks run on: the shared CIFAR-10 JPEG data and MEDIC checkpoint (../shared/,
see its README.md) and the fast-profile models that benchmarks/attacks_fast.py makes."""

from __future__ import annotations

import argparse
from pathlib import Path

from recorded import ROOT, portable

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


def present_models(models: dict[str, tuple[Path, str | None]], names: list[str]) -> list[str]:
    """The names among `names` whose model file exists; a line for each missing one."""
    present = []
    for name in names:
        if models[name][0].exists():
            present.append(name)
        else:
            missing = portable(models[name][0])
            print(f"skipping {name}: {missing} is missing (benchmarks/attacks_fast.py makes it)")
    return present
