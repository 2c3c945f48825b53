"""BAERASER's trigger recovery against a 10-epoch fine-tune on the same clean data, in one
process: the issue's target is recovery <= 2x the fine-tune. Recovery is the label scan (every
label, both forms, trained together per form) plus the kept labels' later staircase steps, at the
defaults; `--apart` also times the scan with one generator at a time (the layout before the
generators were stacked) to show what stacking saves.

    python benchmarks/baeraser_recovery_time.py [--apart]
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import time
from pathlib import Path

import torch
from recorded import ROOT, portable

from purify_backdoor import RunContext, TrainSettings, fit
from purify_backdoor.checkpoints import open_checkpoint
from purify_backdoor.data.clean_subset import clean_subset
from purify_backdoor.data.loading import open_data
from purify_backdoor.report import package_versions
from purify_backdoor.runtime import resolve_device, seed_everything
from purify_backdoor.unlearn import split_clean
from purify_backdoor.unlearn.recovery import RecoverySettings, recover_triggers, trained_generators

SHARED = ROOT.parent / "shared"


def timed(work, *args) -> tuple[float, object]:
    started = time.perf_counter()
    result = work(*args)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, default=SHARED / "checkpoints/nad-wrn16-1-badnet.pth.tar"
    )
    parser.add_argument("--data", type=Path, default=SHARED / "data/cifar10-jpeg.tar.gz")
    parser.add_argument("--ratio", type=float, default=0.05)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--apart", action="store_true", help="also time one generator at a time")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument(
        "--json", type=Path, default=ROOT / "docs/results/baeraser_recovery_time.json"
    )
    args = parser.parse_args()
    seed_everything(0)
    device = resolve_device(args.device)
    context = RunContext(device, seed=0, quiet=args.quiet)
    clean, _ = clean_subset(open_data(args.data).train, seed=0, ratio=args.ratio)
    model = open_checkpoint(args.model)[1].model.to(device).eval()
    (images, _), held_out = split_clean(clean, 0.2, context)
    settings = RecoverySettings()
    labels = list(range(int(model(images[:1].to(device)).shape[1])))
    tuning = TrainSettings(epochs=10, lr=0.01, batch_size=64, weight_decay=5e-4)
    finetune_s, _ = timed(fit, copy.deepcopy(model), clean, tuning, context, "finetune")
    recovery_s, (pool, scan, _) = timed(
        recover_triggers, model, images, held_out, labels, settings, context
    )
    result = {
        "model": portable(args.model),
        "device": str(device),
        "clean_images": len(clean),
        "generator_steps": settings.steps,
        "generator_batch": settings.batch_size,
        "finetune_s": finetune_s,
        "recovery_s": recovery_s,
        "ratio": recovery_s / finetune_s,
        "kept_labels": scan["kept_labels"],
        "generators_trained": len(labels) * len(settings.forms)
        + sum(len(settings.staircase) - 1 for _ in pool),
    }
    if args.apart:
        result["scan_apart_s"] = sum(
            timed(trained_generators, model, images, held_out, [(label, 0)], form, settings,
                  context)[0]
            for form in settings.forms
            for label in labels
        )  # fmt: skip
        result["scan_together_s"] = sum(
            timed(trained_generators, model, images, held_out, [(label, 0) for label in labels],
                  form, settings, context)[0]
            for form in settings.forms
        )  # fmt: skip
    result |= {
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "torch_threads": torch.get_num_threads(),
        "versions": package_versions(),
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print("| stage | seconds |\n|---|---|")
    print(f"| fine-tune, 10 epochs on {len(clean)} images | {finetune_s:.1f} |")
    print(f"| recovery (scan + staircase, kept {scan['kept_labels']}) | {recovery_s:.1f} |")
    print(f"| ratio | {result['ratio']:.2f} |")
    if args.apart:
        print(f"| scan, generators apart | {result['scan_apart_s']:.1f} |")
        print(f"| scan, generators together | {result['scan_together_s']:.1f} |")


if __name__ == "__main__":
    main()
