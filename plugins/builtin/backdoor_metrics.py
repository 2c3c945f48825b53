"""The numbers a backdoor defense is judged by: clean accuracy, attack success rate (ASR), robust
accuracy (true label on triggered images; from the attack spec, or from the triggered test set
stored with the checkpoint), and, against the original model, functionality (the
MEDIC paper's goal: mean L2 distance between softmax outputs on clean test images) and label
agreement. Per-class breakdowns come as `class_acc/<label>` and `triggered_to/<label>` (the share
of triggered images predicted as that label): tables leave them out, the HTML report draws them."""

from __future__ import annotations

import numpy as np

from purify_backdoor import EvalJob, Evaluator, hookimpl, predict_logits, triggered_test_set


def evaluate(job: EvalJob) -> dict[str, float]:
    device = job.context.device
    logits = predict_logits(job.model, job.test.images, device)
    labels = job.test.labels
    metrics = {"clean_acc": float((logits.argmax(1).numpy() == labels).mean())}
    classes = range(job.test.num_classes)
    for label in classes:  # per-class accuracy, for the report's breakdown
        mine = labels == label
        if mine.any():
            metrics[f"class_acc/{label}"] = float((logits.argmax(1).numpy()[mine] == label).mean())
    triggered = triggered_test_set(job.test, job.attack) if job.attack else job.triggered
    if triggered is not None:
        predicted = predict_logits(job.model, triggered.images.images, device).argmax(1).numpy()
        metrics["asr"] = float((predicted == triggered.targets).mean())
        metrics["robust_acc"] = float((predicted == triggered.images.labels).mean())
        shares = np.bincount(predicted, minlength=len(classes)) / max(1, len(predicted))
        metrics |= {f"triggered_to/{label}": float(shares[label]) for label in classes}
    reference = job.reference_logits
    if reference is None and job.reference is not None:
        reference = predict_logits(job.reference, job.test.images, device)
    if reference is not None:
        distance = (logits.softmax(1) - reference.softmax(1)).norm(dim=1)
        metrics["functionality_l2"] = float(distance.mean())
        metrics["agreement"] = float((logits.argmax(1) == reference.argmax(1)).float().mean())
    return metrics


@hookimpl
def register_evaluators(register):
    register(
        Evaluator(
            name="backdoor",
            description="clean accuracy, ASR, robust accuracy, functionality vs the original",
            evaluate=evaluate,
        )
    )
