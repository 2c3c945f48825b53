"""Clean & Compact step 5 on the activation-fitted 2x model of the shared NAD badnet checkpoint:
does fine-tuning on the synthetic images (and their adversarial copies, with pre-attack labels)
win back clean accuracy? Variants: learning rate, soft labels (KL to the original model's outputs)
or hard ones, BatchNorm frozen. Reuses the synthetic images `benchmarks/cc_bases.py` cached in
out/cc-bases; scores on 2,000 random test images (seed 0). Writes
docs/results/cc_finetune_variants.json.

    python benchmarks/cc_bases.py && python benchmarks/cc_finetune_variants.py
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from compact_plugin.activation_fit import fit_to_activations
from compact_plugin.cleaning import decompose_and_clip
from compact_plugin.ranks import choose_ranks
from plugins.attack_spec import parse_attack_spec
from plugins.checkpoints import open_checkpoint
from plugins.data.loading import open_data
from plugins.data.tensors import random_crop_flip, shuffled_batches
from plugins.training import predict_logits

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
VARIANTS = (
    {"lr": 0.01, "bn_train": False, "soft_labels": True, "epochs": 10},
    {"lr": 0.001, "bn_train": False, "soft_labels": True, "epochs": 10},
    {"lr": 0.01, "bn_train": False, "soft_labels": False, "epochs": 10},
)


def main() -> None:
    torch.manual_seed(0)
    _, loaded = open_checkpoint(SHARED / "checkpoints" / "nad-wrn16-1-badnet.pth.tar")
    model = loaded.model.eval()
    test = open_data(SHARED / "data" / "cifar10-jpeg.tar.gz", quiet=True).test
    index = np.random.default_rng(0).permutation(len(test.images))[:2000]
    images, labels = test.images[index], test.labels[index]
    triggered = parse_attack_spec("badnet:pattern=grid,target=5").stamp(images[labels != 5])
    device = torch.device("cpu")

    def score(network: nn.Module) -> dict[str, float]:
        network.eval()
        clean = predict_logits(network, images, device).argmax(1).numpy()
        backdoor = predict_logits(network, triggered, device).argmax(1).numpy()
        return {
            "clean_acc": float((clean == labels).mean()),
            "asr": float((backdoor == 5).mean()),
        }

    data = torch.load(ROOT / "out" / "cc-bases" / "cc-synthetic.pt", weights_only=True)
    synthetic, synthetic_labels, adversarial = (
        data["synthetic"],
        data["labels"],
        data["adversarial"],
    )
    fitted = copy.deepcopy(model)
    decompose_and_clip(fitted, 1e6, {})
    fit_to_activations(fitted, fitted, synthetic, choose_ranks(model, 2.0, "energy"), device)
    with torch.no_grad():
        soft = model(synthetic).softmax(1)
    results = {"fitted, no fine-tuning": score(fitted)}
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
        results[label] = score(network) | {"time_s": time.perf_counter() - started}
        print(label, results[label], flush=True)
    print("| fine-tuning | clean acc | ASR |\n|---|---|---|")
    for label, row in results.items():
        print(f"| {label} | {row['clean_acc']:.2%} | {row['asr']:.2%} |")
    out = ROOT / "docs" / "results" / "cc_finetune_variants.json"
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
