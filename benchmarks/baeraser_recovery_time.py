"""BAERASER's trigger recovery against a 10-epoch fine-tune on the same clean data (the issue's
target: recovery <= 2x). Steps are timed interleaved, round by round in one process, so load
from anything else on the machine hits all alike: a fine-tune step (batch 64), a scan step of
each form (every label's generator together, batch 128 each; in victim passes of the default
size for the device, and of 512 images), the same scan step with one generator (the layout
before the generators were stacked), and a staircase step (one kept label's two later
generators). The totals are projected from the step counts of a default run (150 steps per
generator, 10 epochs of 40 fine-tune steps), plus the held-out scoring, timed once.

    python benchmarks/baeraser_recovery_time.py
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from inputs import add_input_arguments
from recorded import ROOT, portable

from purify_backdoor import RunContext, frozen, random_crop_flip, to_tensor
from purify_backdoor.checkpoints import open_checkpoint
from purify_backdoor.data.clean_subset import clean_subset
from purify_backdoor.data.loading import open_data
from purify_backdoor.host_memory import keep_freed_memory
from purify_backdoor.report import package_versions
from purify_backdoor.runtime import resolve_device, seed_everything
from purify_backdoor.unlearn import recovery as recovery_module
from purify_backdoor.unlearn import split_clean
from purify_backdoor.unlearn.generator import sample_noise
from purify_backdoor.unlearn.recovery import RecoverySettings, generator_trainer, success_rates

FINETUNE_EPOCHS, FINETUNE_BATCH = 10, 64


def timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_input_arguments(parser)
    parser.add_argument("--ratio", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--json", type=Path, default=ROOT / "docs/results/baeraser_recovery_time.json"
    )
    args = parser.parse_args()
    seed_everything(0)
    keep_freed_memory()  # as every purify job does (run_context)
    device = resolve_device(args.device)
    context = RunContext(device, seed=0, quiet=True)
    clean, _ = clean_subset(open_data(args.data).train, seed=0, ratio=args.ratio)
    victim = open_checkpoint(args.model)[1].model.to(device).eval()
    tuned = open_checkpoint(args.model)[1].model.to(device).train()
    (images, _), (held_images, held_labels) = split_clean(clean, 0.2, context)
    settings = RecoverySettings()
    labels = list(range(int(victim(images[:1].to(device)).shape[1])))
    steps = {
        f"scan_{form}": generator_trainer(
            victim, images, labels, [0.5] * len(labels), form, settings, context, 0
        )[1]
        for form in settings.forms
    }
    default_cap = recovery_module.victim_pass_cap
    recovery_module.victim_pass_cap = lambda device, batch: 512  # the stacked passes of a GPU
    steps |= {
        f"scan_{form}_pass512": generator_trainer(
            victim, images, labels, [0.5] * len(labels), form, settings, context, 0
        )[1]
        for form in settings.forms
    }
    recovery_module.victim_pass_cap = default_cap
    steps |= {
        f"apart_{form}": generator_trainer(victim, images, [5], [0.5], form, settings, context, 0)[
            1
        ]
        for form in settings.forms
    }
    steps["staircase"] = generator_trainer(
        victim, images, [5, 5], [0.8, 0.9], "patch", settings, context, 0
    )[1]
    sgd = torch.optim.SGD(tuned.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    clean_images, clean_labels = to_tensor(clean.images), torch.from_numpy(clean.labels)
    generator = torch.Generator().manual_seed(0)

    def finetune_step() -> None:
        index = torch.randint(0, len(clean_images), (FINETUNE_BATCH,), generator=generator)
        batch = random_crop_flip(clean_images[index], generator).to(device)
        loss = F.cross_entropy(tuned(batch), clean_labels[index].to(device))
        sgd.zero_grad(set_to_none=True)
        loss.backward()
        sgd.step()

    steps["finetune"] = finetune_step
    times: dict[str, list[float]] = {name: [] for name in steps}
    with frozen(victim):
        for round_ in range(args.rounds + 2):
            for name, step in steps.items():
                elapsed = timed(step)
                if round_ >= 2:  # warm-up rounds are not counted
                    times[name].append(elapsed)
    median = {name: statistics.median(values) for name, values in times.items()}

    def score(form: str) -> float:
        nets = generator_trainer(victim, images, labels, [0.5] * len(labels), form, settings,
                                 context, 0)[0].eval()  # fmt: skip

        def sample(count: int, generator: torch.Generator):
            return nets(sample_noise(count, generator, device, len(labels))), nets.places(
                count, generator
            )

        return timed(
            lambda: success_rates(
                victim, sample, form, held_images, held_labels, labels, settings, context
            )
        )

    scoring = sum(score(form) for form in settings.forms)
    per_step = settings.steps
    forms = settings.forms
    scan = per_step * sum(median[f"scan_{form}"] for form in forms)
    scan_512 = per_step * sum(median[f"scan_{form}_pass512"] for form in forms)
    apart = per_step * len(labels) * sum(median[f"apart_{form}"] for form in forms)
    recovery = scan + per_step * median["staircase"] + scoring
    finetune = FINETUNE_EPOCHS * math.ceil(len(clean) / FINETUNE_BATCH) * median["finetune"]
    result = {
        "model": portable(args.model),
        "device": str(device),
        "clean_images": len(clean),
        "rounds": args.rounds,
        "step_s": median,
        "scoring_s": scoring,
        "scan_s": scan,
        "scan_apart_s": apart,
        "victim_pass_images": default_cap(device, settings.batch_size),
        "scan_pass512_s": scan_512,
        "recovery_s": recovery,
        "finetune_s": finetune,
        "ratio": recovery / finetune,
        "stacking_speedup": apart / scan,
        "forms": list(forms),
        "victim_images_recovery": per_step * settings.batch_size * (len(forms) * len(labels) + 2),
        "victim_images_finetune": FINETUNE_EPOCHS * len(clean),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "torch_threads": torch.get_num_threads(),
        "versions": package_versions(),
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print("| stage (projected from interleaved median steps) | seconds |\n|---|---|")
    print(f"| fine-tune, {FINETUNE_EPOCHS} epochs on {len(clean)} images | {finetune:.1f} |")
    print(f"| scan, generators stacked per form | {scan:.1f} |")
    print(f"| scan, stacked, victim passes of 512 images | {scan_512:.1f} |")
    print(f"| scan, one generator at a time | {apart:.1f} |")
    print(f"| recovery (stacked scan + one label's staircase + scoring) | {recovery:.1f} |")
    print(f"| ratio recovery / fine-tune | {result['ratio']:.2f} |")


if __name__ == "__main__":
    main()
