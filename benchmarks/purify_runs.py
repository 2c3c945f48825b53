"""Running `purify` as a benchmark cell: its own process (so its peak memory and time are its own),
resumed with `--resume` where an earlier run left its work folder, its report read back."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from recorded import percent


def run_resumable(
    command: list[str], out: Path, allowed: tuple[int, ...] = (0,), env: dict | None = None
) -> tuple[dict | None, bool]:
    """(the report written beside `out`, whether the run resumed). An exit status outside
    `allowed` stops the benchmark with the command's name; an allowed failure that wrote no
    report (a refused option value) gives None."""
    started = out.with_name(out.name + ".work").exists()
    print("$", " ".join(command), "--resume" if started else "", flush=True)
    status = subprocess.run(command + (["--resume"] if started else []), env=env).returncode
    if status not in allowed:
        raise SystemExit(f"{' '.join(command[:6])} ... failed with exit status {status}")
    report = out.with_name(out.name + ".report.json")
    if status != 0 and not report.exists():
        return None, started
    return json.loads(report.read_text()), started


def defense_row(report: dict) -> dict:
    """What every defense benchmark records of one run's report (accuracies in percent)."""
    metrics = report["metrics"]
    return {
        "target": report["attack"]["options"]["target"],
        "status": report.get("status", "purified"),
        "clean_acc_before": percent(metrics["before"]["clean_acc"]),
        "asr_before": percent(metrics["before"]["asr"]),
        "clean_acc": percent(metrics["after"]["clean_acc"]),
        "asr": percent(metrics["after"]["asr"]),
        "defense_time_s": report["defense_time_s"],
        "peak_rss_mib": report["peak_rss_mib"],
    }
