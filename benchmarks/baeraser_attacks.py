"""BAERASER on the shared MEDIC checkpoint and on the fast-profile attack models
(benchmarks/models/fast/, made by benchmarks/attacks_fast.py), with plain fine-tuning beside it,
5% of the CIFAR-10 training set as the defender's clean data. Per model: the labels BAERASER
kept, the target's anomaly index in each trigger form, clean
accuracy and ASR before and after, time. A finished row is skipped on a re-run; a missing model
is skipped with a message; a started one is resumed (`--resume`). A BAERASER row scanned with
other trigger forms than today's, or unlearned under the earlier stop rule (recovered triggers
below 5% alone), is moved to `earlier_rows` and run again.

    python benchmarks/baeraser_attacks.py [--only shared badnet ...]
"""

from __future__ import annotations

import argparse
import json
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

from purify_backdoor.unlearn.generator import FORMS

RESULTS = ROOT / "docs" / "results" / "baeraser_attacks.json"
MODELS = {
    "shared": (SHARED_MODEL, SHARED_ATTACK),
    **{
        name: (FAST_MODELS / f"{name}.pth.tar", None)
        for name in ("badnet", "blended", "sig", "cleanlabel")
    },
}
DEFENSES = ("baeraser", "finetune")
NO_TRIGGER = 3  # purify's exit status when the defense left the model unchanged


def run(name: str, defense: str, args: argparse.Namespace) -> dict:
    model, attack = MODELS[name]
    out = args.work / f"{name}-{defense}.pth.tar"
    command = [
        sys.executable, "-m", "purify_backdoor", "--plugin", defense, str(model),
        "--data", str(args.data), "--ratio", "0.05", "--seed", "0",
        *(["--attack", attack] if attack else []), "--out", str(out), "--overwrite", "--quiet",
    ]  # fmt: skip
    report, _ = run_resumable(command, out, allowed=(0, NO_TRIGGER))
    target = report["attack"]["options"]["target"]
    row = {
        "model": portable(model),
        "defense": defense,
        **defense_row(report),
        "command": portable_command(command[3:]),
        "machine": machine(),
    }
    scan = report.get("details", {}).get("baeraser")
    if scan:
        labels = scan["labels"]
        row |= {
            "kept_labels": scan["kept_labels"],
            "forms": list(labels[str(target)]["success"]),
            "target_anomaly_index": labels[str(target)]["anomaly_index"],
            "target_success": labels[str(target)]["success"],
            "best_other_success": {
                form: max(
                    next(iter(row_["success"][form].values()))
                    for label, row_ in labels.items()
                    if label != str(target)
                )
                for form in labels[str(target)]["success"]
            },
            "unlearning_steps": (scan.get("unlearning") or [{}])[-1].get("step"),
            "unlearning_stop": scan.get("unlearning_stop"),
            "recovery_s": scan.get("recovery_s"),
        }
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| model | backdoored: clean / ASR | BAERASER: kept | target index "
        f"({' / '.join(FORMS)}) "
        "| BAERASER: clean / ASR | time | fine-tune: clean / ASR | time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    by_model: dict[str, dict[str, dict]] = {}
    for row in rows:
        if "defense" in row:
            by_model.setdefault(row["model"], {})[row["defense"]] = row
    for model, found in by_model.items():
        ba, ft = found.get("baeraser"), found.get("finetune")
        first = ba or ft
        index = ba and ba.get("target_anomaly_index") or {}
        lines.append(
            f"| {model} | {first['clean_acc_before']:.2f}% / {first['asr_before']:.2f}% "
            + (
                f"| {ba['kept_labels']} | "
                + " / ".join(f"{index[f]:.1f}" if f in index else "-" for f in FORMS)
                + f" | {ba['clean_acc']:.2f}% / {ba['asr']:.2f}% "
                f"| {ba['defense_time_s']:.0f} s "
                if ba
                else "| | | | "
            )
            + (
                f"| {ft['clean_acc']:.2f}% / {ft['asr']:.2f}% | {ft['defense_time_s']:.0f} s |"
                if ft
                else "| | |"
            )
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--defenses", nargs="*", default=list(DEFENSES), choices=DEFENSES)
    add_input_arguments(parser, model=False)
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "bench-baeraser")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"rows": []}
    chosen = {portable(MODELS[name][0]) for name in args.only}
    earlier = [
        row
        for row in results["rows"]
        if row.get("defense") == "baeraser"
        and row["model"] in chosen
        and (
            set(row.get("target_anomaly_index", {})) != set(FORMS)
            or (row["kept_labels"] and not row.get("unlearning_stop"))
        )
    ]
    results["rows"] = [row for row in results["rows"] if row not in earlier]
    results.setdefault("earlier_rows", []).extend(earlier)
    for name in present_models(MODELS, args.only):
        model = MODELS[name][0]
        for defense in args.defenses:
            done = {(r["model"], r.get("defense")) for r in results["rows"]}
            if (portable(model), defense) in done:
                continue
            results["rows"].append(run(name, defense, args))
            RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results["rows"]))


if __name__ == "__main__":
    main()
