"""Each attack plugin's backdoored WRN-16-1 with `purify attack --profile fast` (every CIFAR-10
training image, 30 epochs of a fast recipe) on the shared JPEG data: clean accuracy, ASR and
training time, beside the `clean` model of the same profile. One `purify attack` process per
attack; a finished attack is skipped and a started one resumed (`--resume`) on a re-run, so the
table can be made over several sessions; a row made with other flags than today's is moved to
docs/results/attacks_fast_tries.json and trained again. The models are kept in
benchmarks/models/fast/ for the bench grid (benchmarks/cifar10_fast.toml).

    python benchmarks/attacks_fast.py                   # every attack, in order
    python benchmarks/attacks_fast.py --only clean badnet
    python benchmarks/attacks_fast.py --arch airbench94 --only clean
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from inputs import FAST_MODELS, add_input_arguments
from purify_runs import run_resumable
from recorded import ROOT, machine, portable_command

MODELS = FAST_MODELS
RESULTS = ROOT / "docs" / "results" / "attacks_fast.json"
TRIES = ROOT / "docs" / "results" / "attacks_fast_tries.json"
# The profile's 30 epochs for WRN-16-1 (the NAD/MEDIC zoo network, the bench grid's models); the
# 1.97M-parameter airbench94 costs about 4.4 min an epoch on 2 CPU cores, four times WRN-16-1, so
# it gets the 12 epochs an hour buys.
ARCH_FLAGS = {"wrn16-1": [], "airbench94": ["--epochs", "12"]}

# Target 5 (dog), as in the MEDIC zoo and the small table; the clean-label attacks' ratios are the
# small table's (they poison dog images only, and all of them would leave no clean dog).
ATTACKS = {
    "clean": ["--poison-ratio", "0"],
    "badnet": ["-o", "pattern=grid"],
    "blended": [],
    "sig": ["--poison-ratio", "0.05"],
    "cleanlabel": ["--poison-ratio", "0.075"],
    # The fast profile's label smoothing is a defence against mislabelled images, which is what
    # warped images look like until the faint warp is learned, and its peak lr of 0.2 favours
    # coarse features; WaNet's code trains without smoothing at lr 0.01.
    "wanet": ["--label-smoothing", "0", "--lr", "0.05"],
    "square": [],
    "trojan": [],
    "polygon": ["-o", "size=10"],
    "filter": ["--poison-ratio", "0.05"],
}


def model_path(name: str, arch: str) -> Path:
    """WRN-16-1's models where the bench grid reads them; other networks' in a folder each."""
    return MODELS / f"{name}.pth.tar" if arch == "wrn16-1" else MODELS / arch / f"{name}.pth.tar"


def attack_command(name: str, flags: list[str], args: argparse.Namespace) -> list[str]:
    return [
        sys.executable, "-m", "purify_backdoor", "attack", "--plugin", name,
        "--data", str(args.data), "--arch", args.arch, "--profile", "fast",
        "--out", str(model_path(name, args.arch)), "--seed", str(args.seed), "-o", "target=5",
        *flags, *ARCH_FLAGS[args.arch], "--quiet",
    ]  # fmt: skip


def train(name: str, flags: list[str], args: argparse.Namespace) -> dict:
    out = model_path(name, args.arch)
    command = attack_command(name, flags, args)
    report, started = run_resumable(command, out)
    return {
        "attack": name,
        "arch": args.arch,
        "clean_acc": 100 * report["metrics"]["clean_acc"],
        "asr": 100 * report["metrics"]["asr"],
        # an interrupted training's time is that of its last part: the report says so
        "train_s": report["wall_time_s"],
        "resumed": started,
        "poisoned_images": report["poisoned_images"],
        "train_images": report["train_images"],
        "machine": machine(),
        "command": portable_command(command[3:]),
    }


def table(rows: list[dict]) -> str:
    """One row per model, each against the clean model of its own network."""
    reference = {row["arch"]: row["clean_acc"] for row in rows if row["attack"] == "clean"}
    lines = [
        "| attack | arch | clean acc | vs clean model | ASR | train time |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        clean = reference.get(row["arch"])
        gap = f"{row['clean_acc'] - clean:+.2f}" if clean is not None else "-"
        lines.append(
            f"| {row['attack']} | {row['arch']} | {row['clean_acc']:.2f}% | {gap} | "
            f"{row['asr']:.2f}% | {row['train_s'] / 60:.1f} min |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_input_arguments(parser, model=False)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", choices=sorted(ATTACKS))
    parser.add_argument("--arch", choices=sorted(ARCH_FLAGS), default="wrn16-1")
    args = parser.parse_args()
    model_path("clean", args.arch).parent.mkdir(parents=True, exist_ok=True)
    rows = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    tries = json.loads(TRIES.read_text()) if TRIES.exists() else []
    for name, flags in ATTACKS.items():
        if args.only and name not in args.only:
            continue
        command = portable_command(attack_command(name, flags, args)[3:])
        same = [row for row in rows if row["attack"] == name and row["arch"] == args.arch]
        stale = [row for row in same if row["command"] != command]
        if stale:
            rows = [row for row in rows if row not in stale]
            tries += stale
            TRIES.write_text(json.dumps(tries, indent=2) + "\n")
            RESULTS.write_text(json.dumps(rows, indent=2) + "\n")
            model_path(name, args.arch).unlink(missing_ok=True)
        if any(row not in stale for row in same):
            continue
        rows.append(train(name, flags, args))
        RESULTS.write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
