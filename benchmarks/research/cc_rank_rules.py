"""Clean & Compact's rank rules at 2x parameters, before any fine-tuning: clean accuracy and ASR of
the shared NAD badnet checkpoint right after decomposition and rank pruning (no clipping), on the
10,000 JPEG test images. Shows how much each rule destroys before the synthetic-data fine-tuning
has to win it back. Writes docs/results/cc_rank_rules.json.

    python benchmarks/research/cc_rank_rules.py
"""

from __future__ import annotations

import copy
import json

from shared_badnet import ROOT, load, score

from purify_backdoor.compact.cleaning import decompose_and_clip
from purify_backdoor.compact.ranks import RULES, choose_ranks, parameters_with

NO_CLIPPING = 1e6


def main() -> None:
    model, test, triggered = load()

    total = sum(parameter.numel() for parameter in model.parameters())
    results = {"input": score(model, test, triggered)}
    for rule in RULES:
        ranks = choose_ranks(model, 2.0, rule)
        compact = copy.deepcopy(model)
        decompose_and_clip(compact, NO_CLIPPING, ranks)
        results[rule] = score(compact, test, triggered) | {
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
