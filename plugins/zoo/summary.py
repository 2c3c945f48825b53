"""The zoo's summary: one row per model (before/after clean accuracy and ASR when known, time,
status, error line), as zoo.csv, zoo.json and zoo.md in the output folder. Only the driver writes
it, atomically, after every model that ends, so an interrupted run leaves a true partial one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from purify_backdoor.atomic import atomic_write, write_csv_atomic, write_json_atomic
from purify_backdoor.overview_html import (
    OUTCOME_HEADER,
    asr_vs_clean,
    link,
    outcome_cells,
    overview_page,
    write_page,
)
from purify_backdoor.report import report_summary
from purify_backdoor.report_html import esc, html_path_for
from purify_backdoor.zoo.inventory import ZooModel
from purify_backdoor.zoo.jobs import LOG, failure_record, model_folder, report_of

COLUMNS = (
    "name", "model", "format", "attack", "status", "clean_acc_before", "asr_before", "clean_acc",
    "asr", "der", "defense_time_s", "wall_time_s", "peak_rss_mib", "error", "report", "html", "log",
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
        page = html_path_for(report_file)
        row |= {
            "format": report["input"].get("format"),
            "attack": (report.get("attack") or {}).get("name"),
            "report": str(report_file.relative_to(out)),
            "html": str(page.relative_to(out)) if page.exists() else None,
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
    paths = [out / "zoo.csv", out / "zoo.json", out / "zoo.md", out / "zoo.html"]
    write_csv_atomic(paths[0], rows, COLUMNS)
    write_json_atomic(paths[1], rows)
    text = markdown(rows)
    atomic_write(paths[2], lambda tmp: Path(tmp).write_text(text))
    write_page(paths[3], html_page(rows, text.splitlines()[0]))
    return paths


def html_page(rows: list[dict[str, Any]], tally: str) -> str:
    """zoo.html: the rows, each model linked to its own report page, and per attack the models'
    move in ASR against clean accuracy."""
    attacks = sorted({row["attack"] for row in rows if row["attack"]})
    figures = [
        asr_vs_clean([row | {"label": row["name"]} for row in rows if row["attack"] == a], a)
        for a in attacks
    ]
    header = ["model", "attack", *OUTCOME_HEADER, "time (s)", "error"]
    body = [
        [
            link(row["name"], row["html"]),
            esc(row["attack"] or "-"),
            *outcome_cells(row),
            "-" if row["wall_time_s"] is None else f"{row['wall_time_s']:.0f}",
            esc(row["error"] or ""),
        ]
        for row in rows
    ]
    plots = [figure for figure in figures if figure]
    return overview_page("purify zoo", tally, header, body, plots, numeric_to=len(header) - 1)


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
