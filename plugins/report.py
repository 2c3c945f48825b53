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


def cpu_model() -> str:
    """The CPU model: kernels, and so the last bits of a result, differ between models."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def machine_facts() -> dict[str, Any]:
    """What decides whether a seed reproduces bit for bit: the same seed gives the same numbers only
    on the same CPU model, vector instruction set, thread count and GPU."""
    facts: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        facts["gpu"] = torch.cuda.get_device_name()
    return facts


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process (and peak GPU memory when a GPU was used), in MiB."""
    peak = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peak["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


def report_summary(report: dict[str, Any]) -> dict[str, Any]:
    """A report's headline numbers, as the bench and zoo tables show them (None where unknown)."""
    metrics = report.get("metrics") or {}
    before, after = metrics.get("before", {}), metrics.get("after", {})
    return {
        "status": report.get("status", "purified"),
        "clean_acc_before": before.get("clean_acc"),
        "asr_before": before.get("asr"),
        "clean_acc": after.get("clean_acc"),
        "asr": after.get("asr"),
        "robust_acc": after.get("robust_acc"),
        "der": metrics.get("der"),
        "functionality_l2": after.get("functionality_l2"),
        "agreement": after.get("agreement"),
        "parameters": after.get("parameters"),
        "defense_time_s": report.get("defense_time_s"),
        "wall_time_s": report.get("wall_time_s"),
        "peak_rss_mib": report.get("peak_rss_mib"),
    }


def build_report(**sections: Any) -> dict[str, Any]:
    return {
        "report_version": 1,
        **sections,
        "versions": package_versions(),
        "machine": machine_facts(),
        **peak_memory(),
    }
