"""The grid's results: one row per finished cell (CSV and JSON), and a Markdown summary with
mean +- std over seeds, rows per model, one column per defense, the undefended model first."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from purify_backdoor.atomic import atomic_write, write_csv_atomic, write_json_atomic
from purify_backdoor.bench.grid import Grid
from purify_backdoor.bench.runner import cell_path, cells, finished
from purify_backdoor.report import report_path_for, report_summary

COLUMNS = (
    "model", "defense", "plugin", "seed", "clean_acc_before", "asr_before", "clean_acc", "asr",
    "robust_acc", "der", "functionality_l2", "agreement", "parameters", "defense_time_s",
    "wall_time_s", "peak_rss_mib", "status",
)  # fmt: skip


def collect_rows(grid: Grid, out: Path) -> list[dict[str, Any]]:
    rows = []
    for cell in cells(grid):
        if not finished(cell, grid, out):
            continue
        report = json.loads(report_path_for(cell_path(cell, out)).read_text())
        cell_row = {
            "model": cell.model.name,
            "defense": cell.defense.name,
            "plugin": cell.defense.plugin,
            "seed": cell.seed,
        }
        summary = report_summary(report)
        rows.append({column: (cell_row | summary)[column] for column in COLUMNS})
    return rows


def write_rows(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    csv_path, json_path = out / "results.csv", out / "results.json"
    write_csv_atomic(csv_path, rows, COLUMNS)
    write_json_atomic(json_path, rows)
    return [csv_path, json_path]


def _spread(values: list[float], scale: float, digits: int) -> str:
    mean = statistics.fmean(values) * scale
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def _pair(rows: list[dict[str, Any]], acc: str, asr: str) -> str:
    """'clean / ASR' in percent, mean +- std over the rows (seeds)."""
    accs = [row[acc] for row in rows if row[acc] is not None]
    asrs = [row[asr] for row in rows if row[asr] is not None]
    if not accs:
        return "-"
    return _spread(accs, 100, 2) + " / " + (_spread(asrs, 100, 2) if asrs else "-")


def _flagged(rows: list[dict[str, Any]], text: str) -> str:
    """`text` with the status of any seed that did not end "purified" (a defense that found
    nothing, or broke the model), so a failure reads as one: a broken model's low ASR and its
    DER rate nothing."""
    statuses = sorted(
        {row["status"] for row in rows if row.get("status", "purified") != "purified"}
    )
    return text + (f" ({', '.join(statuses)})" if statuses else "")


def _mean(rows: list[dict[str, Any]], key: str, scale: float, digits: int) -> str:
    values = [row[key] for row in rows if row.get(key) is not None]
    return f"{statistics.fmean(values) * scale:.{digits}f}" if values else "-"


def _per_defense(grid: Grid, rows: list[dict[str, Any]], cell: Any) -> list[str]:
    defenses = [defense.name for defense in grid.defenses]
    lines = ["| model | " + " | ".join(defenses) + " |", "|---" * (len(defenses) + 1) + "|"]
    for model in grid.models:
        values = [
            cell([r for r in rows if r["model"] == model.name and r["defense"] == defense])
            for defense in defenses
        ]
        lines.append(f"| {model.name} | " + " | ".join(values) + " |")
    return lines


def markdown(grid: Grid, rows: list[dict[str, Any]]) -> str:
    defenses = [defense.name for defense in grid.defenses]
    seeds = ", ".join(map(str, sorted({cell.seed for cell in cells(grid)})))
    lines = [
        f"Clean accuracy / ASR in %, mean ± std over seeds ({seeds}) where there are several; a "
        "status in brackets where a defense did not purify (found nothing, or broke the model).",
        "",
        "| model | no defense | " + " | ".join(defenses) + " |",
        "|---" * (len(defenses) + 2) + "|",
    ]
    for model in grid.models:
        mine = [row for row in rows if row["model"] == model.name]
        # Every defense of a seed starts from the same model: one "before" per seed, and seeds
        # that measured the same file the same way are one measurement, not a spread of zero.
        per_seed = {row["seed"]: row for row in mine}.values()
        before = list({(r["clean_acc_before"], r["asr_before"]): r for r in per_seed}.values())
        pairs = [_pair(before, "clean_acc_before", "asr_before")]
        for defense in defenses:
            cell = [r for r in mine if r["defense"] == defense]
            pairs.append(_flagged(cell, _pair(cell, "clean_acc", "asr")))
        lines.append(f"| {model.name} | " + " | ".join(pairs) + " |")
    lines += ["", "DER (defense effectiveness rating) in %, mean over seeds.", ""]
    lines += _per_defense(grid, rows, lambda mine: _flagged(mine, _mean(mine, "der", 100, 2)))
    lines += ["", "Defense time in seconds (mean over seeds).", ""]
    lines += _per_defense(grid, rows, lambda mine: _mean(mine, "defense_time_s", 1, 0))
    return "\n".join(lines) + "\n"


def write_markdown(grid: Grid, rows: list[dict[str, Any]], out: Path) -> Path:
    path = out / "results.md"
    text = markdown(grid, rows)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path
