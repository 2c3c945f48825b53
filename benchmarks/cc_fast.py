"""Data-free Clean & Compact at 2x, 3x and 4x parameter compression, with CLP (the data-free
baseline) beside it, on the shared MEDIC checkpoint and the fast-profile badnet WRN-16-1
(benchmarks/models/fast/, made by benchmarks/attacks_fast.py). `--data` only scores the models:
clean accuracy and ASR on the 10,000 JPEG test images, before and after. Per cell: parameters
before and after, defense time, peak memory and the rank components clipped. At 2x two
departures are measured beside the default: one threshold mean over all layers (`global`: `-o
threshold=global`) and the original model's labels for fine-tuning (`teacher-labels`: `-o
label_source=original`; it reuses the default cell's synthetic images when their work folder is
still there, as the synthesis does not depend on the labels). A finished cell is skipped on a
re-run and a started one resumed (`--resume`); a compression the model cannot reach is recorded
as such.

    python benchmarks/cc_fast.py [--only shared badnet] [--compressions 2 3 4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from inputs import (
    FAST_MODELS,
    SHARED_ATTACK,
    SHARED_MODEL,
    add_input_arguments,
    present_models,
)
from purify_runs import defense_row, run_resumable
from recorded import ROOT, machine, portable, portable_command

RESULTS = ROOT / "docs" / "results" / "cc_fast.json"
MODELS = {
    "shared": (SHARED_MODEL, SHARED_ATTACK),
    "badnet": (FAST_MODELS / "badnet.pth.tar", None),
}
COMPRESSIONS = ("2", "3", "4")
OUT_OF_REACH = 2  # purify's exit status for a bad option value (the PurifyError's message)
VARIANTS = {"global": ["threshold=global"], "teacher-labels": ["label_source=original"]}


def run(
    name: str, defense: str, compression: str | None, variant: str | None,
    args: argparse.Namespace,
) -> dict:  # fmt: skip
    model, attack = MODELS[name]
    cell = f"{name}-{defense}{compression or ''}{'-' + variant if variant else ''}"
    out = args.work / f"{cell}.pth.tar"
    options = ["-o", f"compression={compression}"] if compression else []
    for option in VARIANTS.get(variant, []):
        options += ["-o", option]
    default_synthesis = args.work / f"{name}-cc{compression}.pth.tar.work" / "cc-synthetic.pt"
    if variant == "teacher-labels" and default_synthesis.exists():
        workdir = out.with_name(out.name + ".work")
        workdir.mkdir(exist_ok=True)
        shutil.copy(default_synthesis, workdir / default_synthesis.name)
    command = [
        sys.executable, "-m", "purify_backdoor", "--plugin", defense, *options, str(model),
        "--data", str(args.data), "--seed", "0", *(["--attack", attack] if attack else []),
        "--out", str(out), "--overwrite", "--quiet",
    ]  # fmt: skip
    row = {
        "model": portable(model),
        "defense": defense,
        "compression": float(compression) if compression else 1.0,
        "variant": variant,
        "command": portable_command(command[3:]),
        "machine": machine(),
    }
    report, _ = run_resumable(command, out, allowed=(0, OUT_OF_REACH), env=dict(os.environ))
    if report is None:
        return row | {"status": "compression out of reach"}
    measured = defense_row(report)
    details = report.get("details", {}).get(defense, {})
    cost = details.get("cost")
    return row | {
        "params": cost["before"]["parameters"] if cost else None,
        "params_after": cost["after"]["parameters"] if cost else None,
        "input_clean_acc": measured["clean_acc_before"],
        "input_asr": measured["asr_before"],
        "clean_acc": measured["clean_acc"],
        "asr": measured["asr"],
        "status": measured["status"],
        "defense_time_s": measured["defense_time_s"],
        "peak_rss_mib": measured["peak_rss_mib"],
        **({"clipped": details["clipped"]} if "clipped" in details else {}),
        **(
            {"adversarial_label_counts": details["adversarial_label_counts"]}
            if "adversarial_label_counts" in details
            else {}
        ),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| model | input: clean / ASR | defense | compression | params after | clean / ASR | "
        "time (s) | peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        defense = row["defense"] + (f" ({row['variant']})" if row.get("variant") else "")
        if "clean_acc" not in row:
            lines.append(
                f"| {row['model']} | | {defense} | {row['compression']:g}x | {row['status']} "
                "| | | |"
            )
            continue
        after = row["params_after"] if row["params_after"] is not None else ""
        lines.append(
            f"| {row['model']} | {row['input_clean_acc']:.2f}% / {row['input_asr']:.2f}% | "
            f"{defense} | {row['compression']:g}x | {after} | "
            f"{row['clean_acc']:.2f}% / {row['asr']:.2f}% | {row['defense_time_s']:.0f} | "
            f"{row['peak_rss_mib']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--compressions", nargs="*", default=list(COMPRESSIONS))
    add_input_arguments(parser, model=False)
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "bench-cc-fast")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"rows": []}
    done = {
        (row["model"], row["defense"], row["compression"], row.get("variant"))
        for row in results["rows"]
    }
    present = present_models(MODELS, args.only)
    # Every model's 2x cells first: one synthesis takes about 20 minutes of one CPU core.
    cells = [("clp", None, None), ("cc", "2", None), ("cc", "2", "global")]
    cells += [("cc", "2", "teacher-labels")]
    cells += [("cc", compression, None) for compression in args.compressions if compression != "2"]
    for defense, compression, variant in cells:
        for name in present:
            ratio = float(compression) if compression else 1.0
            if (portable(MODELS[name][0]), defense, ratio, variant) in done:
                continue
            results["rows"].append(run(name, defense, compression, variant, args))
            RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results["rows"]))


if __name__ == "__main__":
    main()
