"""The whole Clean & Compact defense on a tiny model, data-free, and its two output files."""

from __future__ import annotations

import json

import torch

from compact_plugin.cleaning import decompose_and_clip, dense_equivalent
from compact_plugin.ranks import choose_ranks
from plugins.checkpoints import open_checkpoint
from tests.conftest import tiny_wideresnet
from tests.plugins.test_cli import invoke


def test_no_clipping_no_pruning_keeps_the_function():
    model, reference = tiny_wideresnet(), tiny_wideresnet()
    decompose_and_clip(model, tau_scale=1e6, ranks={})
    images = torch.rand(4, 3, 16, 16)
    assert torch.allclose(model(images), reference(images), atol=1e-4)


def test_dense_equivalent_computes_the_same_function():
    model = tiny_wideresnet()
    decompose_and_clip(model, tau_scale=2.0, ranks=choose_ranks(model, 2.0))
    dense = dense_equivalent(model)
    assert dense.state_dict().keys() == tiny_wideresnet().state_dict().keys()
    images = torch.rand(4, 3, 16, 16)
    assert torch.allclose(dense(images), model(images), atol=1e-4)


def test_cc_runs_without_data_and_writes_both_models(nad_checkpoint):
    result = invoke(
        "--plugin", "cc", nad_checkpoint, "-q", "-o", "synthetic=32",
        "-o", "synthesis_iterations=3", "-o", "epochs=1", "-o", "compression=2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    native = nad_checkpoint.with_name("model.purified.pth.tar")
    compact = nad_checkpoint.with_name("model.purified.compact.pt")
    report = json.loads(native.with_name(native.name + ".report.json").read_text())
    assert report["extra_outputs"][0]["path"] == str(compact)
    cost = report["details"]["cc"]["cost"]
    assert cost["before"]["parameters"] / cost["after"]["parameters"] >= 2
    assert cost["after"]["flops"] < cost["before"]["flops"]

    _, dense = open_checkpoint(native)
    adapter, small = open_checkpoint(compact)
    assert adapter.name == "compact"
    assert sum(p.numel() for p in small.model.parameters()) == cost["after"]["parameters"]
    images = torch.rand(4, 3, 32, 32)
    assert torch.allclose(small.model(images), dense.model(images), atol=1e-4)
