"""Grid files: paths relative to the grid, and one clear error per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from purify_backdoor.bench.grid import load_grid
from purify_backdoor.errors import PurifyError

GOOD = """
data = "data"
seeds = [0, 1]
[models.given]
checkpoint = "m.pth.tar"
attack = "badnet:target=5"
[models.trained]
train = "blended"
options = { target = 3 }
epochs = 2
[defenses.finetune]
options = { epochs = 1 }
[defenses.short-medic]
plugin = "medic"
"""


def test_more_seeds_add_cells_for_some_models_and_defenses_only(tmp_path):
    from purify_backdoor.bench.runner import cells

    path = tmp_path / "grid.toml"
    more = '[[more_seeds]]\nseeds = [1, 2]\nmodels = ["trained"]\ndefenses = ["finetune"]\n'
    path.write_text(GOOD.replace("seeds = [0, 1]", "seeds = [0]") + more + more)
    keys = [cell.key for cell in cells(load_grid(path))]
    assert keys == [
        "given/finetune/seed0", "given/short-medic/seed0", "trained/finetune/seed0",
        "trained/short-medic/seed0", "trained/finetune/seed1", "trained/finetune/seed2",
    ]  # fmt: skip


def test_paths_are_relative_to_the_grid_and_keys_name_plugins(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(GOOD)
    grid = load_grid(path)
    assert grid.data == tmp_path / "data" and grid.seeds == (0, 1) and grid.ratio == 0.05
    given, trained = grid.models
    assert given.checkpoint == tmp_path / "m.pth.tar" and given.attack == "badnet:target=5"
    assert trained.train == "blended" and trained.options == {"target": 3} and trained.epochs == 2
    assert [(d.name, d.plugin) for d in grid.defenses] == [
        ("finetune", "finetune"),
        ("short-medic", "medic"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("data = [", "not valid TOML"),
        ("models = {}\ndefenses = {}", "has no `data`"),
        ('data = "d"\nseeds = []\nmodels = {}\ndefenses = {}', "`seeds` must be a list"),
        ('data = "d"\nepochs = 3\nmodels = {}\ndefenses = {}', "unknown key 'epochs'"),
        ('data = "d"\ndefenses = {}\n[models.m]\narch = "wrn16-1"', "exactly one of"),
        ('data = "d"\ndefenses = {}\n[models.m]\ntrain = "a"\ncheckpoint = "c"', "exactly one"),
        ('data = "d"\nmodels = {}\n[defenses.f]\nlr = 1', "defense 'f': unknown key 'lr'"),
        ('data = "d"\nmodels = {}\ndefenses = {}\nmore_seeds = 1', r"as \[\[more_seeds\]\]"),
        ('data = "d"\nmodels = {}\ndefenses = {}\n[[more_seeds]]\nseeds = [1]', "give `models`"),
        (
            'data = "d"\ndefenses = {}\n[models.m]\ntrain = "a"\n[[more_seeds]]\nseeds = [1]\n'
            'models = ["n"]\ndefenses = ["f"]',
            "no model 'n' in the grid; known: m",
        ),
        (
            'data = "d"\ndefenses = {}\n[models.m]\ntrain = "a"\n[[more_seeds]]\nseeds = 1\n'
            'models = ["m"]\ndefenses = []',
            "give `defenses`",
        ),
    ],
)
def test_mistakes_are_named(tmp_path, text, message):
    path = tmp_path / "grid.toml"
    path.write_text(text)
    with pytest.raises(PurifyError, match=message):
        load_grid(path)


def test_missing_grid_file_is_named(tmp_path):
    with pytest.raises(PurifyError, match="does not exist"):
        load_grid(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    "name",
    ["cifar10_small.toml", "cifar10_paper.toml", "wanet_small.toml", "cifar10_fast.toml"],
)
def test_shipped_grids_name_installed_plugins_and_their_options(name):
    from purify_backdoor.attack_spec import attack_options
    from purify_backdoor.manager import collect
    from purify_backdoor.options import resolve_options

    grid = load_grid(Path(__file__).resolve().parents[3] / "benchmarks" / name)
    defenses, attacks = collect("defense"), collect("attack")
    for defense in grid.defenses:
        declared = defenses[defense.plugin].item.options
        resolve_options(declared, defense.options, defense.name)
    for model in grid.models:
        if model.train:
            resolve_options(attack_options(attacks[model.train].item), model.options, model.name)
