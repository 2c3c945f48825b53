"""Where Clean & Compact's pruned Tucker factors come from, on the shared NAD badnet checkpoint at
2x parameters (energy ranks): the kernel's HOSVD (`bases=weights`) or a fit to each layer's inputs
and outputs on ZeroQ synthetic images (`bases=activations`). Rows without fine-tuning show what
the decomposition alone keeps; the last rows run the whole data-free defense. Clean accuracy and
ASR on all 10,000 JPEG test images. The synthetic images are made once and shared by every row
(cached in --work). Writes docs/results/cc_bases.json.

    python benchmarks/research/cc_bases.py --synthetic 512 --iterations 100 --epochs 10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from shared_badnet import EARLIER_CC, ROOT, load, portable, score

from purify_backdoor.compact.cleaning import CleanCompactSettings, clean_and_compact
from purify_backdoor.plugin_types import RunContext

NO_CLIPPING = 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=512)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "cc-bases")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "results" / "cc_bases.json")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    model, test, triggered = load()
    context = RunContext(torch.device("cpu"), 0, quiet=True, workdir=args.work, resume=True)

    rows = {
        "weights, no clipping, no fine-tuning": ("weights", NO_CLIPPING, 0),
        "activations, no clipping, no fine-tuning": ("activations", NO_CLIPPING, 0),
        "activations, tau_scale 2, no fine-tuning": ("activations", 2.0, 0),
        f"weights, tau_scale 2, {args.epochs} epochs": ("weights", 2.0, args.epochs),
        f"activations, tau_scale 2, {args.epochs} epochs": ("activations", 2.0, args.epochs),
        f"activations, no clipping, {args.epochs} epochs": (
            "activations",
            NO_CLIPPING,
            args.epochs,
        ),
    }
    results = {"input": score(model, test, triggered)}
    for label, (bases, tau_scale, epochs) in rows.items():
        (args.work / "cc.state.pt").unlink(missing_ok=True)  # fine-tuning must not resume
        settings = CleanCompactSettings(
            **EARLIER_CC | {"bases": bases, "epochs": epochs}, tau_scale=tau_scale,
            synthetic=args.synthetic, synthesis_iterations=args.iterations,
        )  # fmt: skip
        started = time.perf_counter()
        compact, _ = clean_and_compact(model, (32, 32), 10, settings, context)
        results[label] = score(compact, test, triggered) | {"time_s": time.perf_counter() - started}
        print(label, results[label], flush=True)
    results["settings"] = vars(args) | {"work": portable(args.work), "json": portable(args.json)}
    print("| Tucker factors, clipping, fine-tuning | clean acc | ASR |\n|---|---|---|")
    for label, row in results.items():
        if label != "settings":
            print(f"| {label} | {row['clean_acc']:.2%} | {row['asr']:.2%} |")
    args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
