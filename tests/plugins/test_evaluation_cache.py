"""The before-defense evaluation is cached by content: a second run on the same checkpoint and
data reads it back, a changed checkpoint is evaluated afresh."""

from __future__ import annotations

import json

import torch

from purify_backdoor.data.loading import cache_dir
from tests.plugins.test_cli import invoke


def _runs(checkpoint, data, tmp_path, name):
    result = invoke(
        "--plugin", "clp", checkpoint, "--data", data, "--attack", "badnet:pattern=grid,target=5",
        "--out", tmp_path / name, "-q", "-o", "u=2.5",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads((tmp_path / f"{name}.report.json").read_text())["metrics"]["before"]


def test_before_metrics_are_read_back_and_keyed_by_content(
    nad_checkpoint, tiny_data, tmp_path, monkeypatch
):
    monkeypatch.setenv("PURIFY_CACHE", str(tmp_path / "cache"))  # empty: this test's entries only
    first = _runs(nad_checkpoint, tiny_data, tmp_path, "a.pth.tar")
    entries = list((cache_dir() / "evaluations").glob("*.json"))
    assert len(entries) == 1
    stored = json.loads(entries[0].read_text())
    stored["metrics"]["clean_acc"] = 0.123  # a marker only a cache read can return
    entries[0].write_text(json.dumps(stored))
    assert _runs(nad_checkpoint, tiny_data, tmp_path, "b.pth.tar")["clean_acc"] == 0.123

    checkpoint = torch.load(nad_checkpoint, weights_only=True)
    checkpoint["state_dict"]["fc.bias"] += 1.0
    torch.save(checkpoint, nad_checkpoint)
    fresh = _runs(nad_checkpoint, tiny_data, tmp_path, "c.pth.tar")
    assert len(list((cache_dir() / "evaluations").glob("*.json"))) == 2
    assert fresh["clean_acc"] != 0.123 and set(fresh) == set(first)


def test_original_logits_are_read_back_for_the_after_comparison(
    nad_checkpoint, tiny_data, tmp_path, monkeypatch
):
    monkeypatch.setenv("PURIFY_CACHE", str(tmp_path / "cache"))
    _runs(nad_checkpoint, tiny_data, tmp_path, "a.pth.tar")
    first = json.loads((tmp_path / "a.pth.tar.report.json").read_text())["metrics"]["after"]
    (entry,) = (cache_dir() / "evaluations").glob("*.pt")
    logits = torch.load(entry, weights_only=True)
    torch.save(logits.roll(1, dims=1), entry)  # every original prediction moves one class on
    _runs(nad_checkpoint, tiny_data, tmp_path, "b.pth.tar")
    second = json.loads((tmp_path / "b.pth.tar.report.json").read_text())["metrics"]["after"]
    assert first["agreement"] > 0.9
    assert second["agreement"] < first["agreement"] - 0.5
    assert second["clean_acc"] == first["clean_acc"]
