"""`purify attack`: poison a training set with an attack plugin and train a backdoored model, saved
with its attack spec so `purify eval` and `purify run` find the trigger by themselves."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from purify_backdoor.atomic import write_json_atomic
from purify_backdoor.attack_spec import (
    make_attack_spec,
    poison_each_batch,
    poison_training_set,
    spec_record,
    stamp_after_augment,
)
from purify_backdoor.checkpoints import check_output_path, save_checkpoint
from purify_backdoor.data.clean_subset import clean_subset
from purify_backdoor.data.loading import open_data
from purify_backdoor.errors import PurifyError
from purify_backdoor.evaluation import evaluate_model
from purify_backdoor.manager import lookup
from purify_backdoor.models.registry import build_model
from purify_backdoor.plugin_types import InputConvention, LoadedModel, RunContext
from purify_backdoor.report import build_report, report_path_for
from purify_backdoor.training import TrainSettings, fit, remove_workdir, workdir_for
from purify_backdoor.work_folder import held_work_folder, started_from

# Training schedules: `small` fits in minutes on 2 CPU cores, `paper` follows the NAD/MEDIC setting,
# `fast` trains on every image with what the fast CIFAR-10 recipes use (Jordan, "94% on CIFAR-10 in
# 3.29 seconds on a single GPU", arXiv 2404.00498): a large batch, a triangular learning rate,
# Nesterov momentum, label smoothing, NHWC tensors. A short schedule cannot learn a small trigger
# that random crops move and flips mirror, so small and fast stamp it after augmentation; the
# paper profile stamps before, as NAD's code does.
PROFILES: dict[str, dict[str, Any]] = {
    "small": {
        "n_train": 10_000, "epochs": 12, "lr": 0.05, "batch_size": 128, "stamp_after_augment": True,
    },
    "fast": {
        "n_train": None, "epochs": 30, "lr": 0.2, "batch_size": 256, "stamp_after_augment": True,
        "schedule": "onecycle", "warmup_epochs": 2.0, "label_smoothing": 0.1, "nesterov": True,
        "channels_last": True,
    },
    "paper": {
        "n_train": None, "epochs": 100, "lr": 0.1, "batch_size": 128, "stamp_after_augment": False,
    },
}  # fmt: skip


@dataclass(frozen=True)
class TrainRequest:
    attack: str
    options: dict[str, Any]
    data: Path
    arch: str
    out: Path
    poison_ratio: float = 0.1
    epochs: int = 30
    lr: float = 0.1
    batch_size: int = 128
    n_train: int | None = None
    stamp_after_augment: bool = False
    overwrite: bool = False
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    nesterov: bool = False
    channels_last: bool = False


def output_format(out: Path, arch: str) -> str:
    """NAD containers hold WideResNets; anything else is written as a plain state dict."""
    return (
        "nad" if out.name.endswith(".pth.tar") and arch.lower().startswith("wrn") else "state_dict"
    )


def train_backdoored(request: TrainRequest, context: RunContext) -> dict[str, float]:
    started = time.perf_counter()
    spec = make_attack_spec(request.attack, request.options)
    check_output_path(request.out, request.data, request.overwrite)
    splits = open_data(request.data, quiet=context.quiet)
    if splits.train is None:
        raise PurifyError(f"{request.data} has no training images (expected a train/ folder)")
    train = splits.train
    if request.n_train:
        train, _ = clean_subset(train, context.seed, count=request.n_train)
    late = request.stamp_after_augment
    if spec.attack.poison_each_batch:
        poisoned, hook = train, poison_each_batch(spec, request.poison_ratio, train.num_classes)
        poisoned_count = round(request.poison_ratio * len(train))
    else:
        poisoned, chosen = poison_training_set(
            train, spec, request.poison_ratio, context.seed, context, stamp=not late
        )
        hook = stamp_after_augment(spec, chosen, len(poisoned)) if late else None
        poisoned_count = len(chosen)
    model = build_model(request.arch, train.num_classes)
    settings = TrainSettings(
        epochs=request.epochs,
        lr=request.lr,
        batch_size=request.batch_size,
        schedule=request.schedule,
        warmup_epochs=request.warmup_epochs,
        label_smoothing=request.label_smoothing,
        nesterov=request.nesterov,
        channels_last=request.channels_last,
    )
    context.workdir = workdir_for(request.out)
    record = started_from(
        command="attack",
        attack=spec_record(spec),
        arch=request.arch,
        settings=vars(settings),
        poison_ratio=request.poison_ratio,
        stamp_after_augment=late,
        training_data=poisoned.fingerprint(),
        seed=context.seed,
    )
    with held_work_folder(context.workdir, record, context.resume):
        fit(
            model,
            poisoned,
            settings,
            context,
            name=f"train-{spec.attack.name}",
            batch_hook=hook,
            hook_before_augment=not late,
        )
        metrics = evaluate_model(model, splits.test, spec, context) if splits.test else {}
        adapter = lookup("adapter", output_format(request.out, request.arch))
        loaded = LoadedModel(
            model=model,
            convention=InputConvention(size=train.size, num_classes=train.num_classes),
            arch=request.arch,
            format=adapter.name,
            container=None,
            attack=spec_record(spec),
        )
        save_checkpoint(adapter, loaded, model, request.out)
        write_json_atomic(
            report_path_for(request.out),
            build_report(
                attack=spec_record(spec),
                arch=request.arch,
                data=str(request.data),
                train_images=len(train),
                poisoned_images=poisoned_count,
                settings=vars(settings)
                | {
                    "poison_ratio": request.poison_ratio,
                    "stamp_after_augment": late,
                    "poison_each_batch": spec.attack.poison_each_batch,
                },
                seed=context.seed,
                device=str(context.device),
                metrics=metrics,
                wall_time_s=time.perf_counter() - started,
            ),
        )
        remove_workdir(context.workdir)
    return metrics
