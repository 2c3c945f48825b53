"""What a BackdoorBench defense leaves in `record/<attack>/defense/<name>/`, written by purify
under `purify-<defense>`: `defense_result.pt` (the keys of its `save_defense_result`),
`<name>_df_summary.csv` (test_acc, test_asr, test_ra, fractions, as its defenses' metric
aggregators write them), `log/` (the run's log and `index.txt`, the clean indices, as ft writes
them); and purify's own: the purified record beside `attack_result.pt`, and `report.json`."""

from __future__ import annotations

import csv
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from purify_backdoor.adapters import backdoorbench
from purify_backdoor.errors import PurifyError
from purify_backdoor.plugin_types import LoadedModel

SUMMARY_COLUMNS = ("test_acc", "test_asr", "test_ra")


@dataclass(frozen=True)
class DefenseFolder:
    folder: Path  # record/<attack>/defense/purify-<defense>/
    record: Path  # record/<attack>/attack_result.purify-<defense>.pt
    name: str  # purify-<defense>

    @classmethod
    def of(cls, record_folder: Path, defense: str) -> DefenseFolder:
        folder = record_folder / backdoorbench.DEFENSE_FOLDER.format(defense=defense)
        record = backdoorbench.default_output(record_folder, defense, ".pt")
        return cls(folder, record, folder.name)

    def check(self, overwrite: bool) -> None:
        """Refuse, before any work, to replace what an earlier run wrote, unless overwrite."""
        taken = [p for p in (self.folder, self.record) if p.exists()]
        if taken and not overwrite:
            raise PurifyError(
                f"{taken[0]} already exists (an earlier run of this defense); pass --overwrite "
                f"to replace it"
            )

    def prepare(self) -> None:
        """An empty folder with its `log/`: nothing of an earlier run is left to mix in."""
        if self.folder.is_dir():
            shutil.rmtree(self.folder)
        (self.folder / "log").mkdir(parents=True)


def write_results(
    place: DefenseFolder,
    loaded: LoadedModel,
    model: nn.Module,
    scores: dict[str, float | None],
    indices: np.ndarray,
    report: dict[str, Any],
    settings: dict[str, Any],
) -> None:
    """Every file of a finished run; the purified record is written last, so its presence says
    the folder is complete."""
    backdoorbench.save_defense_result(loaded, model, "", place.folder / "defense_result.pt")
    with (place.folder / f"{place.name}_df_summary.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["", *SUMMARY_COLUMNS])
        writer.writerow([0, *("" if scores[c] is None else scores[c] for c in SUMMARY_COLUMNS)])
    log = place.folder / "log"
    np.savetxt(log / "index.txt", indices, fmt="%d")
    stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.localtime())
    lines = [f"{key}: {value}" for key, value in settings.items()]
    lines += [f"{key}: {value}" for key, value in scores.items()]
    (log / f"{stamp}.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (place.folder / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    backdoorbench.save(loaded, model, place.record)
