"""Device choice, seeding and host memory: the same seed on one machine gives the same result."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from purify_backdoor.errors import PurifyError
from purify_backdoor.host_memory import keep_freed_memory
from purify_backdoor.plugin_types import RunContext


def resolve_device(name: str) -> torch.device:
    """`auto` picks the GPU when one is present."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PurifyError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PurifyError(f"device '{name}' requested but no GPU is available; use --device cpu")
    return device


def seed_everything(seed: int) -> None:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode also writes NaN into every new tensor, in case an op reads memory it did
    # not write; none of ours does, and the extra pass cost about 9% of a training step on CPU.
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.benchmark = False


def run_context(seed: int = 0, device: str = "auto", quiet: bool = False) -> RunContext:
    """What every job starts from: the process seeded, the device chosen, freed tensor memory kept
    for reuse (host_memory.py)."""
    seed_everything(seed)
    keep_freed_memory()
    return RunContext(device=resolve_device(device), seed=seed, quiet=quiet)
