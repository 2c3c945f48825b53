"""`purify bench` end to end on a tiny grid: a given checkpoint and an attack-trained one, two
defenses, two seeds; CSV, JSON, Markdown and PNG out; a re-run skips finished cells and re-runs
the cells of a defense whose options were edited and of a model whose file was replaced; a
failing cell is named while the others finish."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from purify_backdoor.figures import matplotlib_available
from tests.plugins.test_cli import assert_one_line_error, invoke

GRID = """
data = "{data}"
ratio = 0.5
seeds = [0, 1]

[models.given]
checkpoint = "{checkpoint}"
attack = "badnet:pattern=grid,target=5"
accept_low_accuracy = true

[models.trained]
train = "badnet"
options = {{ target = 3, pattern = "grid" }}
epochs = 1
n_train = 100
accept_low_accuracy = true

[defenses.finetune]
options = {{ epochs = 1 }}

[defenses.clp]
options = {{ u = 0 }}
"""


@pytest.fixture
def grid(tmp_path, tiny_data, nad_checkpoint):
    path = tmp_path / "tiny.toml"
    path.write_text(GRID.format(data=tiny_data, checkpoint=nad_checkpoint))
    return path


def test_bench_runs_the_grid_and_writes_every_output(grid, nad_checkpoint):
    tables = invoke("bench", grid, "--device", "cpu", "-q", "--tables-only")
    assert tables.exit_code == 0, tables.output
    out = grid.with_suffix("")
    assert not (out / "cells").exists() and not (out / "models").exists()
    assert (out / "results.csv").read_text().count("\n") == 1  # the header: nothing finished
    result = invoke("bench", grid, "--device", "cpu", "-q")
    assert result.exit_code == 0, result.output
    out = grid.with_suffix("")
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 8
    assert {(r["model"], r["defense"], r["seed"]) for r in rows} == {
        (m, d, s) for m in ("given", "trained") for d in ("finetune", "clp") for s in ("0", "1")
    }
    assert all(0 <= float(r["asr"]) <= 1 and float(r["peak_rss_mib"]) > 0 for r in rows)
    assert json.loads((out / "results.json").read_text())[0]["model"] == "given"
    table = (out / "results.md").read_text()
    assert "| model | no defense | finetune | clp |" in table and " ± " in table
    assert (out / "models" / "trained.pth.tar").exists()
    if matplotlib_available():
        for name in ("asr_vs_clean.png", "time.png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "results.html").read_text()
    assert 'href="cells/given/clp-seed0.pth.tar.report.html"' in page

    stamp = (out / "cells" / "given" / "clp-seed0.pth.tar").stat().st_mtime_ns
    again = invoke("bench", grid, "--device", "cpu", "-q")
    assert again.exit_code == 0, again.output
    assert (out / "cells" / "given" / "clp-seed0.pth.tar").stat().st_mtime_ns == stamp
    assert list(csv.DictReader((out / "results.csv").open())) == rows

    tuned = (out / "cells" / "given" / "finetune-seed0.pth.tar").stat().st_mtime_ns
    grid.write_text(grid.read_text().replace("options = { u = 0 }", "options = { u = 0.5 }"))
    edited = invoke("bench", grid, "--device", "cpu", "-q")
    assert edited.exit_code == 0, edited.output
    assert (out / "cells" / "given" / "clp-seed0.pth.tar").stat().st_mtime_ns != stamp
    assert (out / "cells" / "given" / "finetune-seed0.pth.tar").stat().st_mtime_ns == tuned

    kept = (out / "cells" / "given" / "finetune-seed0.pth.tar").stat().st_mtime_ns
    retrained = (out / "cells" / "trained" / "finetune-seed0.pth.tar").stat().st_mtime_ns
    model = out / "models" / "trained.pth.tar"
    model.write_bytes(nad_checkpoint.read_bytes())  # the same name, another model
    replaced = invoke("bench", grid, "--device", "cpu", "-q")
    assert replaced.exit_code == 0, replaced.output
    assert (out / "cells" / "trained" / "finetune-seed0.pth.tar").stat().st_mtime_ns != retrained
    assert (out / "cells" / "given" / "finetune-seed0.pth.tar").stat().st_mtime_ns == kept


def test_a_failing_cell_is_named_and_the_rest_still_run(tmp_path, tiny_data, nad_checkpoint):
    path = tmp_path / "bad.toml"
    path.write_text(
        f'data = "{tiny_data}"\nratio = 0.5\n[models.m]\ncheckpoint = "{nad_checkpoint}"\n'
        '[defenses.broken]\nplugin = "finetune"\noptions = { no_such_option = 1 }\n'
        "[defenses.clp]\n"
    )
    result = invoke("bench", path, "--device", "cpu", "-q")
    assert_one_line_error(result, "m/broken/seed0", "unknown option 'no_such_option'", ".log")
    rows = list(csv.DictReader((tmp_path / "bad" / "results.csv").open()))
    assert [r["defense"] for r in rows] == ["clp"]


def test_a_cell_whose_defense_found_nothing_is_a_result(tmp_path, tiny_data, nad_checkpoint):
    path = tmp_path / "noop.toml"
    path.write_text(
        f'data = "{tiny_data}"\nratio = 0.5\n[models.m]\ncheckpoint = "{nad_checkpoint}"\n'
        "[defenses.clp]\noptions = { u = 1000 }\n"
    )
    result = invoke("bench", path, "--device", "cpu", "-q")
    assert result.exit_code == 0, result.output
    (row,) = csv.DictReader((tmp_path / "noop" / "results.csv").open())
    assert row["status"] == "nothing pruned" and row["asr"] == row["asr_before"]


def test_two_jobs_at_once_give_the_rows_of_one(tmp_path, tiny_data, nad_checkpoint):
    text = (
        f'data = "{tiny_data}"\nratio = 0.5\n[models.m]\ncheckpoint = "{nad_checkpoint}"\n'
        "[defenses.clp]\n[defenses.finetune]\noptions = { epochs = 1 }\n"
    )
    rows = {}
    for jobs in ("1", "2"):
        path = tmp_path / f"jobs{jobs}.toml"
        path.write_text(text)
        result = invoke("bench", path, "--device", "cpu", "-q", "--jobs", jobs)
        assert result.exit_code == 0, result.output
        table = csv.DictReader((tmp_path / f"jobs{jobs}" / "results.csv").open())
        rows[jobs] = [(r["defense"], r["clean_acc"], r["asr"], r["status"]) for r in table]
    assert rows["1"] == rows["2"] and len(rows["1"]) == 2


def test_only_runs_some_cells_and_a_moved_grid_keeps_its_finished_ones(
    tmp_path, tiny_data, nad_checkpoint
):
    here = tmp_path / "here"
    shutil.copytree(tiny_data, here / "data" / tiny_data.name)
    shutil.copy(nad_checkpoint, here / "model.pth.tar")
    grid = here / "grid.toml"
    grid.write_text(
        f'data = "data/{tiny_data.name}"\nratio = 0.5\n[models.m]\ncheckpoint = "model.pth.tar"\n'
        "accept_low_accuracy = true\n[defenses.clp]\n"
        "[defenses.finetune]\noptions = { epochs = 1 }\n"
    )
    result = invoke("bench", grid, "--device", "cpu", "-q", "--only", "/clp")
    assert result.exit_code == 0, result.output
    cells = here / "grid" / "cells" / "m"
    assert (cells / "clp-seed0.pth.tar.report.json").exists()
    assert not (cells / "finetune-seed0.pth.tar.log").exists()
    logged = (cells / "clp-seed0.pth.tar.log").read_text().splitlines()[0]
    assert str(tmp_path) not in logged and "--out grid/cells/m/clp-seed0.pth.tar" in logged

    there = tmp_path / "moved" / "there"
    shutil.copytree(here, there)
    shutil.rmtree(here)
    report = there / "grid" / "cells" / "m" / "clp-seed0.pth.tar.report.json"
    stamp = report.stat().st_mtime_ns
    moved = there / "grid.toml"
    tables = invoke("bench", moved, "--device", "cpu", "-q", "--tables-only")
    assert tables.exit_code == 0, tables.output
    (row,) = csv.DictReader((there / "grid" / "results.csv").open())
    assert row["defense"] == "clp"
    typo = invoke("bench", moved, "--device", "cpu", "-q", "--only", "/clq")
    assert_one_line_error(typo, "--only '/clq' names no cell", "m/clp/seed0")
    rest = invoke("bench", moved, "--device", "cpu", "-q")
    assert rest.exit_code == 0, rest.output
    assert report.stat().st_mtime_ns == stamp
    rows = list(csv.DictReader((there / "grid" / "results.csv").open()))
    assert [r["defense"] for r in rows] == ["clp", "finetune"]
