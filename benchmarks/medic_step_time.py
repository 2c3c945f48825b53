"""Time per training step of MEDIC against plain fine-tuning, on the same batches, interleaved
step by step in one process, so load from anything else on the machine hits both alike. The issue's
target: MEDIC <= 2.5x the fine-tune's time.

    python benchmarks/medic_step_time.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from purify_backdoor.checkpoints import open_checkpoint
from purify_backdoor.data.clean_subset import clean_subset
from purify_backdoor.data.loading import open_data
from purify_backdoor.data.tensors import shuffled_batches, to_tensor
from purify_backdoor.medic.cloning import MedicSettings, augment_batch, clone_losses
from purify_backdoor.medic.layers import ActivationRecorder, channel_axis, cloned_layers
from purify_backdoor.medic.reinit import fresh_clone
from purify_backdoor.medic.statistics import teacher_statistics
from purify_backdoor.report import package_versions
from purify_backdoor.runtime import resolve_device, seed_everything

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def timed(step, *args) -> float:
    started = time.perf_counter()
    step(*args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, default=SHARED / "checkpoints/nad-wrn16-1-badnet.pth.tar"
    )
    parser.add_argument("--data", type=Path, default=SHARED / "data/cifar10-jpeg.tar.gz")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--importance", default="reference", choices=("reference", "paper", "none"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=ROOT / "docs/results/medic_step_time.json")
    args = parser.parse_args()
    seed_everything(0)
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

    finetune_times, medic_times = [], []
    finetuned.train()
    clone.train()
    for round_ in range(args.steps + 3):
        index = batches[round_ % len(batches)]
        batch = augment_batch(images[index], generator, settings.rotation).to(device)
        target = labels[index].to(device)
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
        "versions": package_versions(),
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print("| step | median seconds |\n|---|---|")
    print(f"| fine-tune (SGD) | {result['finetune_step_s']:.3f} |")
    print(f"| MEDIC ({args.importance}) | {result['medic_step_s']:.3f} |")
    print(f"| ratio (median of per-round ratios) | {result['ratio']:.2f} |")


if __name__ == "__main__":
    main()
