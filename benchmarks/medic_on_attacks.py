"""MEDIC against plain fine-tuning on the attack plugins' small-profile models (made by
`benchmarks/attacks_small.py`): same clean data (5% of the CIFAR-10 training set), epochs and batch
size for both. Each model's attack spec is read from its checkpoint. Finished cells are skipped on a
re-run.

    python benchmarks/attacks_small.py --only clean badnet blended sig cleanlabel
    python benchmarks/medic_on_attacks.py --quiet
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from inputs import add_input_arguments
from medic_vs_finetune import ROOT, run

ATTACKS = ("badnet", "blended", "sig", "cleanlabel")
METHODS = {"finetune": "finetune", "medic": "medic (reference: signed)"}


def table(results: dict[str, dict], reference: float | None) -> str:
    lines = [
        "| attack | backdoored: clean / ASR | fine-tune: clean / ASR | MEDIC: clean / ASR "
        "| MEDIC clean cost | MEDIC ASR below fine-tune |",
        "|---|---|---|---|---|---|",
    ]
    for attack, rows in results.items():
        if set(METHODS.values()) - rows.keys():
            continue
        before = rows["finetune"]["before"]
        finetune = rows[METHODS["finetune"]]["after"]
        medic = rows[METHODS["medic"]]["after"]
        cost = 100 * (before["clean_acc"] - medic["clean_acc"])
        lines.append(
            f"| {attack} | {before['clean_acc']:.2%} / {before['asr']:.2%} "
            f"| {finetune['clean_acc']:.2%} / {finetune['asr']:.2%} "
            f"| {medic['clean_acc']:.2%} / {medic['asr']:.2%} | {cost:+.2f} points "
            f"| {'yes' if medic['asr'] < finetune['asr'] else 'no'} |"
        )
    if reference is not None:
        lines.append(f"\n(`clean` model of the same profile: {reference:.2%} clean accuracy)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "out" / "attacks-small")
    add_input_arguments(parser, model=False)
    parser.add_argument("--attacks", nargs="*", default=list(ATTACKS))
    parser.add_argument("--ratio", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "bench-medic-attacks")
    parser.add_argument(
        "--json", type=Path, default=ROOT / "docs" / "results" / "medic_on_attacks.json"
    )
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    args.attack, args.only = None, list(METHODS.values())
    results = json.loads(args.json.read_text()) if args.json.exists() else {}

    def save() -> None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")

    for attack in args.attacks:
        model = args.models / f"{attack}.pth.tar"
        if not model.exists():
            print(f"skipping {attack}: {model} is missing (run benchmarks/attacks_small.py)")
            continue
        results.setdefault(attack, {})
        run(args, model, results[attack], save)
    clean_report = args.models / "clean.pth.tar.report.json"
    reference = (
        json.loads(clean_report.read_text())["metrics"]["clean_acc"]
        if clean_report.exists()
        else None
    )
    print(table(results, reference))


if __name__ == "__main__":
    main()
