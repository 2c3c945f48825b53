"""Time per training step of MEDIC against plain fine-tuning, on the same batches, interleaved
step by step in one process, so load from anything else on the machine hits both alike (issue #23's
target: MEDIC <= 1.8x the fine-tune's time on CPU), and the peak memory of each kind of step, each
measured in a process of its own.

    python benchmarks/medic_step_time.py
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from inputs import add_input_arguments
from recorded import ROOT

from purify_backdoor.checkpoints import open_checkpoint
from purify_backdoor.data.clean_subset import clean_subset
from purify_backdoor.data.loading import open_data
from purify_backdoor.data.tensors import shuffled_batches, to_tensor
from purify_backdoor.host_memory import keep_freed_memory
from purify_backdoor.medic.cloning import MedicSettings, augment_batch, clone_losses
from purify_backdoor.medic.layers import ActivationRecorder, channel_axis, cloned_layers
from purify_backdoor.medic.reinit import fresh_clone
from purify_backdoor.medic.statistics import teacher_statistics
from purify_backdoor.report import package_versions
from purify_backdoor.runtime import resolve_device, seed_everything

STEPS = ("finetune", "medic")


def timed(step, *args) -> float:
    started = time.perf_counter()
    step(*args)
    return time.perf_counter() - started


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_input_arguments(parser)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--importance", default="reference", choices=("reference", "paper", "none"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=ROOT / "docs/results/medic_step_time.json")
    parser.add_argument("--peak-of", choices=("none", *STEPS), help=argparse.SUPPRESS)
    return parser.parse_args()


def build(args: argparse.Namespace) -> tuple[dict[str, Callable], Callable, torch.device]:
    """The two steps on their own models and optimizers, and a function drawing round i's
    augmented batch."""
    seed_everything(0)
    keep_freed_memory()  # as every purify job does (run_context)
    device = resolve_device(args.device)
    settings = MedicSettings(importance=args.importance)
    clean, _ = clean_subset(open_data(args.data).train, seed=0, ratio=0.05)
    loaded = open_checkpoint(args.model)[1]
    teacher = loaded.model.to(device).eval().requires_grad_(False)
    finetuned = fresh_clone(teacher, loaded.arch).to(device).requires_grad_(True)
    finetuned.load_state_dict(teacher.state_dict())
    clone = fresh_clone(teacher, loaded.arch).to(device).requires_grad_(True)
    layers = cloned_layers(teacher, settings.hook_layers)
    names = [name for name, _ in layers]
    axes = [channel_axis(module) for _, module in layers]
    modules = dict(teacher.named_modules()), dict(clone.named_modules())
    hooks = tuple(ActivationRecorder([m[name] for name in names]) for m in modules)
    generator = torch.Generator().manual_seed(0)
    images, labels = to_tensor(clean.images), torch.from_numpy(clean.labels)
    hooks[0].calibrate(teacher, images[:64].to(device))
    hooks[1].calibrate(clone, images[:64].to(device))
    batches = [index for index in shuffled_batches(len(clean), 64, generator)][:-1]
    stats = teacher_statistics(
        teacher, hooks[0], (images[i].to(device) for i in batches[:10]), axes
    )
    sgd = torch.optim.SGD(finetuned.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    adam = torch.optim.Adam(clone.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)

    def finetune_step(batch, target):
        loss = F.cross_entropy(finetuned(batch), target)
        sgd.zero_grad(set_to_none=True)
        loss.backward()
        sgd.step()

    def medic_step(batch, target):
        _, ce, cloning = clone_losses(teacher, clone, hooks, batch, target, stats, settings)
        adam.zero_grad(set_to_none=True)
        (ce + settings.hook_weight * cloning).backward()
        adam.step()

    def draw(round_: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = batches[round_ % len(batches)]
        batch = augment_batch(images[index], generator, settings.rotation).to(device)
        return batch, labels[index].to(device)

    finetuned.train()
    clone.train()
    return {"finetune": finetune_step, "medic": medic_step}, draw, device


def peak_memory(args: argparse.Namespace) -> dict[str, float]:
    """Peak resident memory (and GPU memory) of a process that sets up and then runs 5 steps of
    one kind only, or none: each kind in its own process, so one's peak is not the other's."""
    steps, draw, device = build(args)
    for round_ in range(5 if args.peak_of != "none" else 0):
        steps[args.peak_of](*draw(round_))
    peak = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        peak["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return peak


def measured_peaks(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    flags = ["--model", str(args.model), "--data", str(args.data), "--device", args.device]
    flags += ["--importance", args.importance]
    return {
        kind: json.loads(
            subprocess.run(
                [sys.executable, __file__, *flags, "--peak-of", kind],
                capture_output=True, text=True, check=True,
            ).stdout.splitlines()[-1]
        )
        for kind in ("none", *STEPS)
    }  # fmt: skip


def main() -> None:
    args = arguments()
    if args.peak_of:
        print(json.dumps(peak_memory(args)))
        return
    steps, draw, device = build(args)
    finetune_step, medic_step = steps["finetune"], steps["medic"]
    finetune_times, medic_times = [], []
    for round_ in range(args.steps + 3):
        batch, target = draw(round_)
        order = (finetune_step, medic_step) if round_ % 2 else (medic_step, finetune_step)
        times = {step: timed(step, batch, target) for step in order}
        if round_ >= 3:  # warm-up rounds are not counted
            finetune_times.append(times[finetune_step])
            medic_times.append(times[medic_step])
    result = {
        "device": str(device),
        "batch_size": 64,
        "steps": args.steps,
        "importance": args.importance,
        "finetune_step_s": statistics.median(finetune_times),
        "medic_step_s": statistics.median(medic_times),
        "ratio": statistics.median(m / f for m, f in zip(medic_times, finetune_times, strict=True)),
        "torch_threads": torch.get_num_threads(),
        "peak_memory": measured_peaks(args),
        "versions": package_versions(),
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print("| step | median seconds |\n|---|---|")
    print(f"| fine-tune (SGD) | {result['finetune_step_s']:.3f} |")
    print(f"| MEDIC ({args.importance}) | {result['medic_step_s']:.3f} |")
    print(f"| ratio (median of per-round ratios) | {result['ratio']:.2f} |")
    peaks = result["peak_memory"]
    print("\n| process | peak RSS MiB |\n|---|---|")
    for kind, peak in peaks.items():
        print(f"| set up, then {kind} steps | {peak['peak_rss_mib']:.0f} |")


if __name__ == "__main__":
    main()
