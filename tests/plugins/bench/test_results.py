"""The Markdown summary: mean ± std over seeds, the undefended model first, gaps shown."""

from __future__ import annotations

from pathlib import Path

from purify_backdoor.bench.grid import DefenseSpec, Grid, ModelSpec
from purify_backdoor.bench.results import markdown


def row(model, defense, seed, acc, asr, time=10.0, der=0.9, status="purified"):
    return {
        "model": model, "defense": defense, "seed": seed, "clean_acc_before": 0.8,
        "asr_before": 1.0, "clean_acc": acc, "asr": asr, "defense_time_s": time, "der": der,
        "status": status,
    }  # fmt: skip


def grid_of(seeds: tuple[int, ...], models: tuple[str, ...]) -> Grid:
    return Grid(
        path=Path("g.toml"),
        data=Path("d"),
        ratio=0.05,
        n_clean=None,
        seeds=seeds,
        models=tuple(ModelSpec(name, checkpoint=Path(name)) for name in models),
        defenses=(DefenseSpec("ft", "finetune"), DefenseSpec("clp", "clp")),
    )


def test_mean_and_std_over_seeds_per_defense():
    grid = grid_of(seeds=(0, 1), models=("m", "other"))
    rows = [row("m", "ft", 0, 0.70, 0.10, 4.0), row("m", "ft", 1, 0.74, 0.20, 6.0)]
    rows += [row("m", "clp", 0, 0.79, 0.05), row("m", "clp", 1, 0.79, 0.05)]
    for seed_one in rows[1::2]:
        seed_one["clean_acc_before"] = 0.82  # every defense of a seed sees the same model
    text = markdown(grid, rows)
    lines = text.splitlines()
    assert "| model | no defense | ft | clp |" in lines
    expected = (
        "| m | 81.00 ± 1.41 / 100.00 ± 0.00 | 72.00 ± 2.83 / 15.00 ± 7.07 | "
        "79.00 ± 0.00 / 5.00 ± 0.00 |"
    )
    assert expected in lines
    assert "| other | - | - | - |" in lines
    assert "| m | 5 | 10 |" in lines


def test_one_seed_shows_no_spread():
    grid = grid_of(seeds=(0,), models=("m",))
    rows = [row("m", "ft", 0, 0.70, 0.10), row("m", "clp", 0, 0.79, 0.05)]
    assert "| m | 80.00 / 100.00 | 70.00 / 10.00 | 79.00 / 5.00 |" in markdown(grid, rows)


def test_an_undefended_model_measured_alike_by_every_seed_shows_no_spread():
    grid = grid_of(seeds=(0, 1), models=("m",))
    rows = [row("m", "ft", 0, 0.70, 0.10), row("m", "ft", 1, 0.74, 0.20)]
    assert markdown(grid, rows).splitlines()[4].startswith("| m | 80.00 / 100.00 | 72.00 ± 2.83")


def test_der_per_defense_and_a_failed_defense_says_so():
    grid = grid_of(seeds=(0, 1), models=("m",))
    rows = [row("m", "ft", 0, 0.70, 0.10, der=0.9), row("m", "ft", 1, 0.74, 0.20, der=0.8)]
    rows += [row("m", "clp", 0, 0.10, 0.0, der=0.5, status="broken")]
    rows += [row("m", "clp", 1, 0.80, 1.0, der=None, status="nothing pruned")]
    lines = markdown(grid, rows).splitlines()
    assert any(line.endswith("45.00 ± 49.50 / 50.00 ± 70.71 (broken, nothing pruned) |")
               for line in lines)  # fmt: skip
    der = lines.index("DER (defense effectiveness rating) in %, mean over seeds.")
    assert lines[der + 4] == "| m | 85.00 | 50.00 (broken, nothing pruned) |"
