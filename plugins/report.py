"""The JSON report written beside every purified model: enough to reproduce and to audit the run."""

from __future__ import annotations

import platform
import resource
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("purify-backdoor", "torch", "torchvision", "numpy", "pillow", "pluggy", "click")


def report_path_for(out: Path) -> Path:
    """Where the report of the model written to `out` goes: beside it."""
    return out.with_name(out.name + ".report.json")


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process (and peak GPU memory when a GPU was used), in MiB."""
    peak = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peak["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


def build_report(**sections: Any) -> dict[str, Any]:
    return {"report_version": 1, **sections, "versions": package_versions(), **peak_memory()}
