"""Where Clean & Compact's default pipeline gains and loses, stage by stage, on the shared NAD
badnet checkpoint and the fast-profile badnet WRN-16-1: clean accuracy and ASR after the rank
scaling alone (step 2, dense), after truncation to 2x, 3x and 4x parameters (step 3, before any
synthetic data), and after the whole defense (steps 4-5: the rows `benchmarks/cc_fast.py` wrote
to docs/results/cc_fast.json). Writes docs/results/cc_stages.json.

    python benchmarks/research/cc_stages.py
"""

from __future__ import annotations

import json

from shared_badnet import ROOT, SHARED_MODEL, load, percent, portable, score

from purify_backdoor import PurifyError
from purify_backdoor.compact.cleaning import CleanCompactSettings, decomposed

MODELS = (SHARED_MODEL, ROOT / "benchmarks" / "models" / "fast" / "badnet.pth.tar")
COMPRESSIONS = (2.0, 3.0, 4.0)
RESULTS = ROOT / "docs" / "results"


def percents(metrics: dict[str, float]) -> dict[str, float]:
    return {key: percent(value) for key, value in metrics.items()}


def main() -> None:
    defended = json.loads((RESULTS / "cc_fast.json").read_text())["rows"]
    rows = []
    for checkpoint in MODELS:
        model, test, triggered = load(checkpoint=checkpoint)
        name = portable(checkpoint)
        rows.append({"model": name, "stage": "input"} | percents(score(model, test, triggered)))
        scaled, _, layers = decomposed(model, CleanCompactSettings(compression=1.0))
        clipped = sum(sum(layer["clipped"].values()) for layer in layers.values())
        rows.append(
            {"model": name, "stage": "scaled", "clipped": clipped}
            | percents(score(scaled, test, triggered))
        )
        for compression in COMPRESSIONS:
            row = {"model": name, "stage": "truncated", "compression": compression}
            try:
                compact, _, _ = decomposed(model, CleanCompactSettings(compression=compression))
            except PurifyError as error:
                rows.append(row | {"status": str(error)})
                continue
            rows.append(row | percents(score(compact, test, triggered)))
            for cell in defended:
                if (cell["model"], cell["defense"], cell["compression"]) == (
                    name, "cc", compression
                ) and not cell.get("variant") and "clean_acc" in cell:  # fmt: skip
                    rows.append(
                        {"model": name, "stage": "fine-tuned", "compression": compression}
                        | {key: cell[key] for key in ("clean_acc", "asr")}
                    )
    print("| model | stage | compression | clean acc | ASR |\n|---|---|---|---|---|")
    for row in rows:
        compression = f"{row['compression']:g}x" if "compression" in row else ""
        measured = (
            f"{row['clean_acc']:.2f}% | {row['asr']:.2f}%" if "clean_acc" in row else row["status"]
        )
        print(f"| {row['model']} | {row['stage']} | {compression} | {measured} |")
    (RESULTS / "cc_stages.json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
