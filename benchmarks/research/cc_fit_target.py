"""What Clean & Compact's fitted layers should reproduce, on the shared NAD badnet checkpoint at 2x
parameters (energy ranks, no clipping, no fine-tuning): each layer's own kernel on the inputs it
now gets (`fit_target=layer`, the default) or the unpruned network's outputs of that layer
(`fit_target=network`, asymmetric reconstruction). Two probes beside them, neither in the plugin:
the network fit on only the synthetic images furthest from the suspected target class (the class
where most untargeted PGD copies land, C&C step 5's premise), and on real training images (not
data-free: the ceiling better synthetic data could reach). Clean accuracy and ASR on all 10,000
JPEG test images. Writes docs/results/cc_fit_target.json.

    python benchmarks/research/cc_fit_target.py --synthetic 512 --iterations 100
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from shared_badnet import EARLIER_CC, ROOT, SHARED, load, portable, score
from torch import nn

from purify_backdoor.compact.cleaning import (
    CleanCompactSettings,
    clean_and_compact,
    decomposed,
    fit_pruned_layers,
)
from purify_backdoor.compact.synthesis import adversarial_copies, predict
from purify_backdoor.data.loading import open_data
from purify_backdoor.data.tensors import batch_slices, to_tensor
from purify_backdoor.plugin_types import RunContext

NO_CLIPPING = 1e6


def network_fit(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """The plugin's `fit_target=network` path on given images, whatever made them."""
    settings = CleanCompactSettings(**EARLIER_CC, tau_scale=NO_CLIPPING, fit_target="network")
    compact, ranks, _ = decomposed(model, settings)
    fit_pruned_layers(compact, images, ranks, settings.fit_target, torch.device("cpu"))
    return compact


def furthest_from(model: nn.Module, images: torch.Tensor, target: int, keep: float) -> torch.Tensor:
    """The `keep` share of `images` with the lowest target margin (target logit minus the best
    other logit)."""
    with torch.no_grad():
        logits = torch.cat([model(images[part]) for part in batch_slices(len(images), 256)])
    others = logits.clone()
    others[:, target] = -torch.inf
    margin = logits[:, target] - others.max(1).values
    return images[margin.argsort()[: round(keep * len(images))]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=512)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--real", type=int, default=1024)
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "cc-fit-target")
    parser.add_argument(
        "--json", type=Path, default=ROOT / "docs" / "results" / "cc_fit_target.json"
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    model, test, triggered = load()
    context = RunContext(torch.device("cpu"), 0, quiet=True, workdir=args.work, resume=True)
    results: dict = {"input": score(model, test, triggered)}

    def record(label: str, started: float, compact: nn.Module) -> None:
        results[label] = score(compact, test, triggered) | {"time_s": time.perf_counter() - started}
        print(label, results[label], flush=True)

    for fit_target in ("layer", "network"):
        settings = CleanCompactSettings(
            **EARLIER_CC, tau_scale=NO_CLIPPING, fit_target=fit_target, synthetic=args.synthetic,
            synthesis_iterations=args.iterations,
        )  # fmt: skip
        started = time.perf_counter()
        compact, _ = clean_and_compact(model, (32, 32), 10, settings, context)
        record(f"fit_target={fit_target}, {args.synthetic} synthetic", started, compact)

    synthetic = torch.load(args.work / "cc-synthetic.pt", weights_only=True)
    labels = synthetic["labels"]
    images = synthetic["synthetic"]
    copies = adversarial_copies(model, images, labels, 8 / 255, 10, context)
    landed = predict(model, copies, context.device)
    counts = torch.bincount(landed, minlength=10)
    target = int(counts.argmax())
    results["adversarial_label_counts"] = counts.tolist()
    print("suspected target", target, counts.tolist(), flush=True)
    for keep in (0.25, 0.1):
        started = time.perf_counter()
        kept = furthest_from(model, images, target, keep)
        compact = network_fit(model, kept)
        record(f"network, {len(kept)} synthetic furthest from class {target}", started, compact)

    train = open_data(SHARED / "data" / "cifar10-jpeg.tar.gz", quiet=True).train
    chosen = np.random.default_rng(0).permutation(len(train.images))[: args.real]
    started = time.perf_counter()
    compact = network_fit(model, to_tensor(train.images[chosen]))
    record(f"network, {args.real} real training images (not data-free)", started, compact)

    results["settings"] = vars(args) | {"work": portable(args.work), "json": portable(args.json)}
    print("| fit | clean acc | ASR |\n|---|---|---|")
    for label, row in results.items():
        if isinstance(row, dict) and "asr" in row:
            print(f"| {label} | {row['clean_acc']:.2%} | {row['asr']:.2%} |")
    args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
