"""MEDIC at tau 5, 10, 20 and `auto` on the shared MEDIC checkpoint and the fast-profile SIG and
clean-label models (benchmarks/models/fast/, made by benchmarks/attacks_fast.py): 60 epochs, 5% of
the CIFAR-10 training set as the defender's clean data, seed 0. Per cell: clean accuracy and ASR
before and after, defense time, and for `auto` the temperature its rule chose and the held-out
accuracies it saw. Cells run `--jobs` at a time with the cores split between them; a finished cell
is skipped on a re-run and a started one resumed (`--resume`), so the table can span sessions.

    python benchmarks/medic_tau_auto.py [--only shared sig cleanlabel] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
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

RESULTS = ROOT / "docs" / "results" / "medic_tau_auto.json"
MODELS = {
    "shared": (SHARED_MODEL, SHARED_ATTACK),
    "sig": (FAST_MODELS / "sig.pth.tar", None),
    "cleanlabel": (FAST_MODELS / "cleanlabel.pth.tar", None),
}
TAUS = ("5", "10", "20", "auto")
FIRST = ("auto", "5", "10", "20")  # auto against tau 5 decides the default: those run first


def run(name: str, tau: str, threads: int, args: argparse.Namespace) -> dict:
    model, attack = MODELS[name]
    out = args.work / f"{name}-tau{tau}.pth.tar"
    command = [
        sys.executable, "-m", "purify_backdoor", "--plugin", "medic", "-o", f"tau={tau}",
        str(model), "--data", str(args.data), "--ratio", "0.05", "--seed", "0",
        *(["--attack", attack] if attack else []), "--out", str(out), "--overwrite", "--quiet",
    ]  # fmt: skip
    report, _ = run_resumable(command, out, env=os.environ | {"OMP_NUM_THREADS": str(threads)})
    row = {
        "model": portable(model),
        "tau": tau,
        **defense_row(report),
        "threads": threads,
        "command": portable_command(command[3:]),
        "machine": machine(),
    }
    auto = report.get("details", {}).get("medic", {}).get("tau_auto")
    if auto:
        row["tau_auto"] = auto
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| model | backdoored: clean / ASR | "
        + " | ".join(f"tau {tau}: clean / ASR" for tau in TAUS)
        + " | auto chose | auto time / tau 5 time |",
        "|---|---|" + "---|" * len(TAUS) + "---|---|",
    ]
    by_model: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_model.setdefault(row["model"], {})[row["tau"]] = row
    for model, cells in by_model.items():
        first = next(iter(cells.values()))
        auto, five = cells.get("auto"), cells.get("5")
        taus = [
            f"{cells[tau]['clean_acc']:.2f}% / {cells[tau]['asr']:.2f}%" if tau in cells else ""
            for tau in TAUS
        ]
        chose = f"{auto['tau_auto']['chosen']:g}" if auto else ""
        cost = f"{auto['defense_time_s'] / five['defense_time_s']:.2f}" if auto and five else ""
        lines.append(
            f"| {model} | {first['clean_acc_before']:.2f}% / {first['asr_before']:.2f}% | "
            + " | ".join(taus)
            + f" | {chose} | {cost} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--taus", nargs="*", default=list(TAUS), choices=TAUS)
    parser.add_argument("--jobs", type=int, default=2, help="cells at once; cores split evenly")
    add_input_arguments(parser, model=False)
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "bench-medic-tau")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"rows": []}
    done = {(row["model"], row["tau"]) for row in results["rows"]}
    present = present_models(MODELS, args.only)
    cells = [
        (name, tau)
        for tau in FIRST
        if tau in args.taus
        for name in present
        if (portable(MODELS[name][0]), tau) not in done
    ]
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    lock = threading.Lock()

    def cell(name: str, tau: str) -> None:
        row = run(name, tau, threads, args)
        with lock:
            results["rows"].append(row)
            RESULTS.write_text(json.dumps(results, indent=2) + "\n")

    with ThreadPoolExecutor(args.jobs) as pool:
        for future in [pool.submit(cell, name, tau) for name, tau in cells]:
            future.result()
    print(table(results["rows"]))


if __name__ == "__main__":
    main()
