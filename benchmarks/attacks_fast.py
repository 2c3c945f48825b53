"""Each attack plugin's backdoored WRN-16-1 with `purify attack --profile fast` (every CIFAR-10
training image, 30 epochs of a fast recipe) on the shared JPEG data: clean accuracy, ASR and
training time, beside the `clean` model of the same profile. One `purify attack` process per
attack; a finished attack is skipped and a started one resumed (`--resume`) on a re-run, so the
table can be made over several sessions; a row made with other flags than today's is moved to
docs/results/attacks_fast_tries.json and trained again. The models are kept in
benchmarks/models/fast/ for the bench grid (benchmarks/cifar10_fast.toml).

    python benchmarks/attacks_fast.py                   # every attack, in order
    python benchmarks/attacks_fast.py --only clean badnet
"""

from __future__ import annotations

import argparse
import json
import sys

from inputs import FAST_MODELS, add_input_arguments
from purify_runs import run_resumable
from recorded import ROOT, machine, portable_command

MODELS = FAST_MODELS
RESULTS = ROOT / "docs" / "results" / "attacks_fast.json"
TRIES = ROOT / "docs" / "results" / "attacks_fast_tries.json"
ARCH = "wrn16-1"

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


def attack_command(name: str, flags: list[str], args: argparse.Namespace) -> list[str]:
    return [
        sys.executable, "-m", "purify_backdoor", "attack", "--plugin", name,
        "--data", str(args.data), "--arch", ARCH, "--profile", "fast",
        "--out", str(MODELS / f"{name}.pth.tar"), "--seed", str(args.seed), "-o", "target=5",
        *flags, "--quiet",
    ]  # fmt: skip


def train(name: str, flags: list[str], args: argparse.Namespace) -> dict:
    out = MODELS / f"{name}.pth.tar"
    command = attack_command(name, flags, args)
    report, started = run_resumable(command, out)
    return {
        "attack": name,
        "arch": ARCH,
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
    reference = next((row["clean_acc"] for row in rows if row["attack"] == "clean"), None)
    lines = [
        "| attack | arch | clean acc | vs clean model | ASR | train time |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        gap = f"{row['clean_acc'] - reference:+.2f}" if reference is not None else "-"
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
    args = parser.parse_args()
    MODELS.mkdir(parents=True, exist_ok=True)
    rows = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    tries = json.loads(TRIES.read_text()) if TRIES.exists() else []
    for name, flags in ATTACKS.items():
        if args.only and name not in args.only:
            continue
        command = portable_command(attack_command(name, flags, args)[3:])
        stale = [row for row in rows if row["attack"] == name and row["command"] != command]
        if stale:
            rows = [row for row in rows if row not in stale]
            tries += stale
            TRIES.write_text(json.dumps(tries, indent=2) + "\n")
            RESULTS.write_text(json.dumps(rows, indent=2) + "\n")
            (MODELS / f"{name}.pth.tar").unlink(missing_ok=True)
        if any(row["attack"] == name for row in rows):
            continue
        rows.append(train(name, flags, args))
        RESULTS.write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
