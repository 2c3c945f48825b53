"""Clean & Compact step 5 on the activation-fitted 2x model of the shared NAD badnet checkpoint:
does fine-tuning on the synthetic images (and their adversarial copies, with pre-attack labels)
win back clean accuracy? Variants: learning rate, soft labels (KL to the original model's outputs)
or hard ones, BatchNorm frozen. Reuses the synthetic images `benchmarks/cc_bases.py` cached in
out/cc-bases; scores on 2,000 random test images (seed 0). Writes
docs/results/cc_finetune_variants.json.

    python benchmarks/research/cc_bases.py && python benchmarks/research/cc_finetune_variants.py
"""

from __future__ import annotations

import copy
import json
import time

import torch
import torch.nn.functional as F
from shared_badnet import EARLIER_CC, ROOT, load, score
from torch import nn

from purify_backdoor.compact.cleaning import CleanCompactSettings, decomposed, fit_pruned_layers
from purify_backdoor.data.tensors import random_crop_flip, shuffled_batches

VARIANTS = (
    {"lr": 0.01, "bn_train": False, "soft_labels": True, "epochs": 10},
    {"lr": 0.001, "bn_train": False, "soft_labels": True, "epochs": 10},
    {"lr": 0.01, "bn_train": False, "soft_labels": False, "epochs": 10},
)


def main() -> None:
    torch.manual_seed(0)
    model, test, triggered = load(count=2000)
    device = torch.device("cpu")
    work = ROOT / "out" / "cc-bases"
    data = torch.load(work / "cc-synthetic.pt", weights_only=True)
    synthetic, synthetic_labels = data["synthetic"], data["labels"]
    adversarial = torch.load(work / "cc-adversarial.pt", weights_only=True)["images"]
    settings = CleanCompactSettings(
        **EARLIER_CC, tau_scale=1e6, compression=2.0, rank_rule="energy"
    )
    fitted, ranks, _ = decomposed(model, settings)
    fit_pruned_layers(fitted, synthetic, ranks, settings.fit_target, device)
    with torch.no_grad():
        soft = model(synthetic).softmax(1)
    results = {"fitted, no fine-tuning": score(fitted, test, triggered)}
    print(results, flush=True)

    for variant in VARIANTS:
        started = time.perf_counter()
        network = copy.deepcopy(fitted)
        parameters = list(network.parameters())
        optimizer = torch.optim.SGD(parameters, lr=variant["lr"], momentum=0.9, weight_decay=5e-4)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, variant["epochs"])
        generator = torch.Generator().manual_seed(0)
        for _ in range(variant["epochs"]):
            network.train(variant["bn_train"])
            for batch in shuffled_batches(len(synthetic), 64, generator):
                inputs = random_crop_flip(
                    torch.cat([synthetic[batch], adversarial[batch]]), generator
                )
                output = network(inputs)
                clean_part, adversarial_part = output[: len(batch)], output[len(batch) :]
                if variant["soft_labels"]:
                    loss = F.kl_div(clean_part.log_softmax(1), soft[batch], reduction="batchmean")
                else:
                    loss = F.cross_entropy(clean_part, synthetic_labels[batch])
                loss = loss + F.cross_entropy(adversarial_part, synthetic_labels[batch])
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(parameters, 5.0)
                optimizer.step()
            scheduler.step()
        label = ", ".join(f"{key}={value}" for key, value in variant.items())
        results[label] = score(network, test, triggered) | {"time_s": time.perf_counter() - started}
        print(label, results[label], flush=True)
    print("| fine-tuning | clean acc | ASR |\n|---|---|---|")
    for label, row in results.items():
        print(f"| {label} | {row['clean_acc']:.2%} | {row['asr']:.2%} |")
    out = ROOT / "docs" / "results" / "cc_finetune_variants.json"
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
