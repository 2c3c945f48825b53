"""The zoo's summary: one row per model (before/after clean accuracy and ASR when known, time,
status, error line), as zoo.csv, zoo.json and zoo.md in the output folder. Only the driver writes
it, atomically, after every model that ends, so an interrupted run leaves a true partial one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from purify_backdoor.atomic import atomic_write, write_csv_atomic, write_json_atomic
from purify_backdoor.report import report_summary
from purify_backdoor.zoo.inventory import ZooModel
from purify_backdoor.zoo.jobs import LOG, failure_record, model_folder, report_of

COLUMNS = (
    "name", "model", "format", "status", "clean_acc_before", "asr_before", "clean_acc", "asr",
    "der", "defense_time_s", "wall_time_s", "peak_rss_mib", "error", "report", "log",
)  # fmt: skip
FAILED_STATUS = "failed"
PENDING_STATUS = "not run"


def model_row(model: ZooModel, out: Path, finished: bool) -> dict[str, Any]:
    """The row of one model from what is on disk: its report when finished, else its failure."""
    folder = model_folder(model, out)
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row |= {"name": model.name, "model": str(model.path), "status": PENDING_STATUS}
    if (folder / LOG).exists():
        row["log"] = str((folder / LOG).relative_to(out))
    report_file = report_of(model, out)
    if finished and report_file is not None:
        report = json.loads(report_file.read_text())
        summary = report_summary(report)
        row |= {key: value for key, value in summary.items() if key in row}
        row |= {
            "format": report["input"].get("format"),
            "report": str(report_file.relative_to(out)),
        }
        return row
    failure = failure_record(model, out)
    if failure is not None:
        row |= {
            "status": FAILED_STATUS,
            "error": failure.get("error"),
            "wall_time_s": failure.get("seconds"),
        }
    return row


def write_summary(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    paths = [out / "zoo.csv", out / "zoo.json", out / "zoo.md"]
    write_csv_atomic(paths[0], rows, COLUMNS)
    write_json_atomic(paths[1], rows)
    text = markdown(rows)
    atomic_write(paths[2], lambda tmp: Path(tmp).write_text(text))
    return paths


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def markdown(rows: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    tally = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
    lines = [
        f"{len(rows)} models: {tally}. Accuracies in %.",
        "",
        "| model | status | clean before | ASR before | clean after | ASR after | DER | time (s) "
        "| error |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        time_s = "-" if row["wall_time_s"] is None else f"{row['wall_time_s']:.0f}"
        error = (row["error"] or "").replace("|", "\\|")
        cells = [
            row["name"],
            row["status"],
            _percent(row["clean_acc_before"]),
            _percent(row["asr_before"]),
            _percent(row["clean_acc"]),
            _percent(row["asr"]),
            _percent(row["der"]),
            time_s,
            error,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
