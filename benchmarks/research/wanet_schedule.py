"""How the fast-profile wanet WRN-16-1 learns the warp over a longer schedule or at a higher
poisoning ratio: clean accuracy, ASR and where the warped non-target test images go, read from the
training's per-epoch resume state (`<out>.work/train-wanet.state.pt`) while the training runs, so
the evidence survives an interrupted run, or from the finished model file. Behind the wanet
paragraphs of docs/attacks.md. Appends one row per call to docs/results/wanet_schedule.json.

    python benchmarks/research/wanet_schedule.py \
        out/wanet_e40/wanet.pth.tar.work/train-wanet.state.pt --epochs 40 \
        --command "purify attack --plugin wanet ... --epochs 40 ..."
    python benchmarks/research/wanet_schedule.py out/wanet_e40/wanet.pth.tar --epochs 40 ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from shared_badnet import ROOT, SHARED, percent

from purify_backdoor.attack_spec import parse_attack_spec, triggered_test_set
from purify_backdoor.checkpoints import open_checkpoint
from purify_backdoor.data.loading import open_data
from purify_backdoor.models.registry import build_model
from purify_backdoor.training import predict_logits

RESULTS = ROOT / "docs" / "results" / "wanet_schedule.json"
TARGET = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state", type=Path)
    parser.add_argument("--command", required=True, help="the training's command, for the row")
    parser.add_argument("--epochs", type=int, required=True, help="the schedule's length")
    args = parser.parse_args()
    state = torch.load(args.state, map_location="cpu", weights_only=True)
    # told apart by content, not name: a copied state file keeps its keys, not its suffix
    if isinstance(state, dict) and {"model", "epoch", "scheduler"} <= state.keys():
        model = build_model("wrn16-1", 10)
        model.load_state_dict(state["model"])
        epoch, lr_now = int(state["epoch"]), float(state["scheduler"]["_last_lr"][0])
    else:  # the finished model: its work folder, and the state in it, are gone
        model, epoch, lr_now = open_checkpoint(args.state)[1].model, args.epochs, 0.0
    model.eval()
    test = open_data(SHARED / "data" / "cifar10-jpeg.tar.gz", quiet=True).test
    triggered = triggered_test_set(test, parse_attack_spec(f"wanet:target={TARGET}"))
    device = torch.device("cpu")
    clean = predict_logits(model, test.images, device).argmax(1).numpy()
    warped = predict_logits(model, triggered.images.images, device).argmax(1).numpy()
    row = {
        "epoch": epoch,
        "epochs": args.epochs,
        "lr_now": lr_now,
        "clean_acc": percent(float((clean == test.labels).mean())),
        "asr": percent(float((warped == TARGET).mean())),
        # the control: the same non-target images, unwarped, sent to the target
        "unwarped_to_target": percent(float((clean[test.labels != TARGET] == TARGET).mean())),
        "warped_to_label": [percent(float((warped == label).mean())) for label in range(10)],
        "images": len(warped),
        "command": args.command,
    }
    rows = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    rows.append(row)
    RESULTS.write_text(json.dumps(rows, indent=2) + "\n")
    print({key: row[key] for key in ("epoch", "lr_now", "clean_acc", "asr", "unwarped_to_target")})
    print("warped images to each label:", np.round(row["warped_to_label"], 1).tolist())


if __name__ == "__main__":
    main()
