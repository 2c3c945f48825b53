"""MEDIC against plain fine-tuning on one backdoored checkpoint: same clean data, epochs and batch
size; clean accuracy, ASR, wall time per epoch and peak memory. Each method runs as its own
`purify` process, so peak memory is its own. Finished methods are skipped on a re-run.

    python benchmarks/medic_vs_finetune.py            # the shared MEDIC badnet checkpoint
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from inputs import SHARED_ATTACK, add_input_arguments
from recorded import ROOT, portable_command


def methods(epochs: int, batch: int) -> dict[str, list[str]]:
    common = ["-o", f"epochs={epochs}", "-o", f"batch_size={batch}"]
    return {
        "finetune": ["--plugin", "finetune", *common],
        "medic (reference: signed)": ["--plugin", "medic", *common, "-o", "importance=reference"],
        "medic (paper: magnitude)": ["--plugin", "medic", *common, "-o", "importance=paper"],
    }


def run(
    args: argparse.Namespace, model: Path, results: dict[str, dict], save: Callable[[], None]
) -> dict[str, dict]:
    """Each method on `model` that `results` lacks; `save()` after each (so a re-run resumes).
    Without `args.attack`, the attack spec stored in the checkpoint is used."""
    args.work.mkdir(parents=True, exist_ok=True)
    for name, flags in methods(args.epochs, args.batch_size).items():
        if args.only and not any(part in name for part in args.only):
            continue
        if name in results:
            continue
        out = args.work / f"{model.name.split('.')[0]}-{name.split()[0]}{''.join(model.suffixes)}"
        command = [
            sys.executable, "-m", "purify_backdoor", *flags, str(model), "--data", str(args.data),
            "--ratio", str(args.ratio), "--seed", str(args.seed),
            *(["--attack", args.attack] if args.attack else []),
            "--out", str(out), "--overwrite", *(["--quiet"] if args.quiet else []),
        ]  # fmt: skip
        print("$", " ".join(command), flush=True)
        subprocess.run(command, check=True)
        report = json.loads(out.with_name(out.name + ".report.json").read_text())
        results[name] = {
            "command": portable_command(command[3:]),
            "before": report["metrics"]["before"],
            "after": report["metrics"]["after"],
            "der": report["metrics"]["der"],
            "defense_time_s": report["defense_time_s"],
            "seconds_per_epoch": report["defense_time_s"] / args.epochs,
            "peak_rss_mib": report["peak_rss_mib"],
            "device": report["device"],
        }
        save()
    return results


def table(results: dict[str, dict]) -> str:
    base = results.get("finetune", {}).get("seconds_per_epoch")
    lines = [
        "| method | clean acc | ASR | DER | s/epoch | x fine-tune | peak RSS MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    first = next(iter(results.values()))["before"]
    lines.append(f"| (backdoored input) | {first['clean_acc']:.2%} | {first['asr']:.2%} | | | | |")
    for name, row in results.items():
        ratio = f"{row['seconds_per_epoch'] / base:.2f}" if base else "-"
        lines.append(
            f"| {name} | {row['after']['clean_acc']:.2%} | {row['after']['asr']:.2%} | "
            f"{row['der']:.2%} | {row['seconds_per_epoch']:.1f} | {ratio} | "
            f"{row['peak_rss_mib']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_input_arguments(parser)
    parser.add_argument("--attack", default=SHARED_ATTACK)
    parser.add_argument("--ratio", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="run only methods whose name contains these")
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "bench-medic")
    parser.add_argument(
        "--json", type=Path, default=ROOT / "docs" / "results" / "medic_vs_finetune.json"
    )
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    save = lambda: args.json.write_text(json.dumps(results, indent=2) + "\n")  # noqa: E731
    print(table(run(args, args.model, results, save)))


if __name__ == "__main__":
    main()
