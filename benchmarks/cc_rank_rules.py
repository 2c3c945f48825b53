"""Clean & Compact's rank rules at 2x parameters, before any fine-tuning: clean accuracy and ASR of
the shared NAD badnet checkpoint right after decomposition and rank pruning (no clipping), on the
10,000 JPEG test images. Shows how much each rule destroys before the synthetic-data fine-tuning
has to win it back. Writes docs/results/cc_rank_rules.json.

    python benchmarks/cc_rank_rules.py
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from compact_plugin.cleaning import decompose_and_clip
from compact_plugin.ranks import RULES, choose_ranks, parameters_with
from plugins.attack_spec import parse_attack_spec, triggered_test_set
from plugins.checkpoints import open_checkpoint
from plugins.data.loading import open_data
from plugins.training import predict_logits

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
NO_CLIPPING = 1e6


def main() -> None:
    _, loaded = open_checkpoint(SHARED / "checkpoints" / "nad-wrn16-1-badnet.pth.tar")
    model = loaded.model.eval()
    test = open_data(SHARED / "data" / "cifar10-jpeg.tar.gz", quiet=True).test
    triggered = triggered_test_set(test, parse_attack_spec("badnet:pattern=grid,target=5"))
    device = torch.device("cpu")

    def score(network: torch.nn.Module) -> dict[str, float]:
        clean = predict_logits(network, test.images, device).argmax(1).numpy()
        backdoor = predict_logits(network, triggered.images.images, device).argmax(1).numpy()
        return {
            "clean_acc": float((clean == test.labels).mean()),
            "asr": float((backdoor == triggered.targets).mean()),
        }

    total = sum(parameter.numel() for parameter in model.parameters())
    results = {"input": score(model)}
    for rule in RULES:
        ranks = choose_ranks(model, 2.0, rule)
        compact = copy.deepcopy(model)
        decompose_and_clip(compact, NO_CLIPPING, ranks)
        results[rule] = score(compact) | {
            "compression": total / parameters_with(model, ranks),
            "ranks": {name: list(pair) for name, pair in ranks.items()},
        }
    print("| ranks | compression | clean acc | ASR |\n|---|---|---|---|")
    for name, row in results.items():
        ratio = f"{row['compression']:.2f}x" if "compression" in row else "1x"
        print(f"| {name} | {ratio} | {row['clean_acc']:.2%} | {row['asr']:.2%} |")
    out = ROOT / "docs" / "results" / "cc_rank_rules.json"
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
