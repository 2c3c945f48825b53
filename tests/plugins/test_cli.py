"""The `purify` command line, driven as a user would."""

from __future__ import annotations

import hashlib
import json

import torch
from click.testing import CliRunner

from purify_backdoor.cli import cli


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_plugins_lists_every_kind():
    result = invoke("plugins")
    assert result.exit_code == 0
    for name in ("finetune", "badnet", "backdoor", "nad", "state_dict"):
        assert name in result.output
    rows = json.loads(invoke("plugins", "--json").output)
    assert {"name", "kind", "package", "version", "description"} == set(rows[0])
    kinds = {row["kind"] for row in rows}
    assert kinds == {"defense", "attack", "evaluator", "adapter", "dataset"}
    datasets = {row["name"]: row["package"] for row in rows if row["kind"] == "dataset"}
    assert datasets["imagefolder"] == datasets["trojai_examples"] == "purify-backdoor"


def test_plugin_help_shows_the_plugins_own_options():
    result = invoke("--plugin", "finetune", "--help")
    assert result.exit_code == 0
    assert "--epochs" in result.output and "--batch-size" in result.output
    assert "fine-tune the model on the clean subset" in result.output
    assert "--epochs" not in invoke("run", "--help").output


def run_finetune(model, data, *extra):
    return invoke(
        "--plugin", "finetune", model, "--data", data, "--ratio", "0.5",
        "-o", "epochs=1", "--attack", "badnet:pattern=grid,target=0", "-q", *extra,
    )  # fmt: skip


def test_run_end_to_end_writes_same_format_and_report(nad_checkpoint, tiny_data):
    before = sha(nad_checkpoint)
    result = run_finetune(nad_checkpoint, tiny_data, "--seed", "3")
    assert result.exit_code == 0, result.output
    out = nad_checkpoint.with_name("model.purified.pth.tar")
    assert sha(nad_checkpoint) == before
    original = torch.load(nad_checkpoint, weights_only=True)
    purified = torch.load(out, weights_only=True)
    assert purified.keys() == original.keys()
    assert purified["state_dict"].keys() == original["state_dict"].keys()
    changed = [k for k in original["state_dict"] if "weight" in k]
    assert any(
        not torch.equal(original["state_dict"][k], purified["state_dict"][k]) for k in changed
    )

    report = json.loads(out.with_name(out.name + ".report.json").read_text())
    assert report["input"]["sha256"] == before and report["input"]["format"] == "nad"
    assert report["plugin"] == {
        "name": "finetune",
        "package": "purify-backdoor",
        "version": report["versions"]["purify-backdoor"],
        "options": {"epochs": 1, "lr": 0.01, "batch_size": 64, "weight_decay": 5e-4},
    }
    assert report["seed"] == 3 and report["data"]["clean_images"] == 100
    assert len(report["data"]["clean_indices"]) == 100
    assert {"clean_acc", "asr"} <= report["metrics"]["before"].keys()
    assert "functionality_l2" in report["metrics"]["after"]
    assert 0 <= report["metrics"]["der"] <= 1
    assert report["wall_time_s"] > 0 and report["peak_rss_mib"] > 0
    assert report["machine"]["torch_threads"] == torch.get_num_threads()
    assert "clean_acc" in result.output and "purified model:" in result.output
    assert not out.with_name(out.name + ".work").exists()

    again = run_finetune(nad_checkpoint, tiny_data)
    assert_one_line_error(again, "already exists", "--overwrite")
    assert run_finetune(nad_checkpoint, tiny_data, "--overwrite").exit_code == 0


def test_output_never_replaces_the_input(nad_checkpoint, tiny_data):
    before = sha(nad_checkpoint)
    result = run_finetune(nad_checkpoint, tiny_data, "--out", nad_checkpoint, "--overwrite")
    assert_one_line_error(result, "is the input model")
    assert sha(nad_checkpoint) == before


def test_out_dir_takes_the_default_name_and_excludes_out(nad_checkpoint, tiny_data, tmp_path):
    result = run_finetune(nad_checkpoint, tiny_data, "--out-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "model.purified.pth.tar.report.json").is_file()
    both = run_finetune(nad_checkpoint, tiny_data, "--out-dir", tmp_path, "--out", tmp_path / "x")
    assert_one_line_error(both, "--out and --out-dir")


def test_same_seed_same_result(nad_checkpoint, tiny_data, tmp_path):
    outs = [tmp_path / "a.pth.tar", tmp_path / "b.pth.tar", tmp_path / "c.pth.tar"]
    for out, seed in zip(outs, ("1", "1", "2"), strict=True):
        assert run_finetune(nad_checkpoint, tiny_data, "--out", out, "--seed", seed).exit_code == 0
    a, b, c = (torch.load(out, weights_only=True)["state_dict"] for out in outs)
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert not all(torch.equal(a[key], c[key]) for key in a)


def test_fast_profile_trains_every_image_with_its_recipe(tmp_path, tiny_data):
    out = tmp_path / "fast.pth.tar"
    result = invoke(
        "attack", "--plugin", "badnet", "--data", tiny_data, "--arch", "wrn10-1",
        "--profile", "fast", "--epochs", "1", "--out", out, "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(out.with_name(out.name + ".report.json").read_text())
    assert report["train_images"] == 200  # every image: no subset
    settings = report["settings"]
    assert (settings["schedule"], settings["nesterov"], settings["channels_last"]) == (
        "onecycle",
        True,
        True,
    )
    assert settings["batch_size"] == 256 and settings["label_smoothing"] == 0.1
    assert torch.load(out, weights_only=True)["state_dict"]["conv1.weight"].is_contiguous()


def test_attack_then_eval_finds_the_stored_trigger(tmp_path, tiny_data):
    out = tmp_path / "bad.pth.tar"
    result = invoke(
        "attack", "--plugin", "badnet", "--data", tiny_data, "--arch", "wrn10-1",
        "--epochs", "1", "--n-train", "100", "--out", out, "--target", "2", "-q",
        "--label-smoothing", "0.2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    stored = torch.load(out, weights_only=True)["purify_attack"]
    report = json.loads(out.with_name(out.name + ".report.json").read_text())
    assert report["train_images"] == 100 and report["settings"]["epochs"] == 1
    assert report["settings"]["lr"] == 0.05  # from the small profile
    assert report["settings"]["stamp_after_augment"] is True
    assert report["settings"]["label_smoothing"] == 0.2  # an override the profile lacks
    assert not out.with_name(out.name + ".work").exists()
    assert stored["name"] == "badnet" and stored["options"]["target"] == 2
    metrics_file = tmp_path / "metrics.json"
    result = invoke("eval", out, "--data", tiny_data, "--json", metrics_file, "-q")
    assert result.exit_code == 0, result.output
    written = json.loads(metrics_file.read_text())
    assert written["attack"]["options"]["target"] == 2
    assert 0 <= written["metrics"]["asr"] <= 1 and "clean_acc" in written["metrics"]
