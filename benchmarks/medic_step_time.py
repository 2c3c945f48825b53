"""Time per training step of MEDIC against plain fine-tuning, on the same batches, interleaved
step by step in one process, so load from anything else on the machine hits both alike (issue
#23's target: MEDIC <= 1.8x the fine-tune's time on CPU); where the MEDIC step's time goes; and
the tensor memory each kind of step holds at its peak.

    python benchmarks/medic_step_time.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from inputs import add_input_arguments
from recorded import ROOT
from torch.profiler import ProfilerActivity, profile, record_function

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
        with record_function("finetune.forward"):
            loss = F.cross_entropy(finetuned(batch), target)
        sgd.zero_grad(set_to_none=True)
        with record_function("finetune.backward"):
            loss.backward()
        with record_function("finetune.optimizer"):
            sgd.step()

    def medic_step(batch, target):
        _, ce, cloning = clone_losses(teacher, clone, hooks, batch, target, stats, settings)
        adam.zero_grad(set_to_none=True)
        with record_function("medic.backward"):
            (ce + settings.hook_weight * cloning).backward()
        with record_function("medic.optimizer"):
            adam.step()

    def draw(round_: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = batches[round_ % len(batches)]
        batch = augment_batch(images[index], generator, settings.rotation).to(device)
        return batch, labels[index].to(device)

    finetuned.train()
    clone.train()
    return {"finetune": finetune_step, "medic": medic_step}, draw, device


def phases(steps: dict[str, Callable], draw: Callable, rounds: int = 10) -> dict[str, float]:
    """Median milliseconds per step of each labelled part of each step (`medic.*` from
    clone_losses, the rest from the steps above), under torch.profiler, after the timing."""
    spent: dict[str, list[float]] = {}
    for round_ in range(rounds):
        batch, target = draw(round_)
        for step in steps.values():
            with profile(activities=[ProfilerActivity.CPU]) as run:
                step(batch, target)
            for event in run.events():
                if event.name.startswith(("medic.", "finetune.")):
                    spent.setdefault(event.name, [0.0] * rounds)[round_] += event.cpu_time_total
    return {name: statistics.median(times) / 1000 for name, times in spent.items()}


def peak_tensor_mib(step: Callable, batch: torch.Tensor, target: torch.Tensor) -> float:
    """The most tensor memory one step holds at once beyond what was allocated before it (its
    activations, gradients and temporaries), from torch.profiler's allocation records on CPU and
    the allocator's peak on a GPU. The models, optimizer state and data are not counted."""
    if batch.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(batch.device)
        before = torch.cuda.memory_allocated(batch.device)
        step(batch, target)
        return (torch.cuda.max_memory_allocated(batch.device) - before) / 2**20
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as run:
        step(batch, target)
    changes = sorted(
        (event.time_range.start, event.cpu_memory_usage)
        if event.name == "[memory]"
        else (event.time_range.start, event.self_cpu_memory_usage)
        for event in run.events()
    )
    held = peak = 0
    for _, change in changes:
        held += change
        peak = max(peak, held)
    return peak / 2**20


def main() -> None:
    args = arguments()
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
        "phases_ms": phases(steps, draw),
        "peak_tensor_mib": {name: peak_tensor_mib(step, *draw(0)) for name, step in steps.items()},
        "versions": package_versions(),
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print("| step | median seconds |\n|---|---|")
    print(f"| fine-tune (SGD) | {result['finetune_step_s']:.3f} |")
    print(f"| MEDIC ({args.importance}) | {result['medic_step_s']:.3f} |")
    print(f"| ratio (median of per-round ratios) | {result['ratio']:.2f} |")
    print("\n| part of a step | median ms |\n|---|---|")
    for name, spent in result["phases_ms"].items():
        print(f"| {name} | {spent:.1f} |")
    print("\n| step | peak tensor memory MiB |\n|---|---|")
    for name, peak in result["peak_tensor_mib"].items():
        print(f"| {name} | {peak:.0f} |")


if __name__ == "__main__":
    main()
