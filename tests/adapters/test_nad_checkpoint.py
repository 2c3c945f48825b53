import pytest
import torch

from purify_backdoor.checkpoints import default_output_path, open_checkpoint
from purify_backdoor.errors import PurifyError
from tests.conftest import tiny_wideresnet


def test_round_trip_keeps_keys_and_outputs(nad_checkpoint, tmp_path):
    adapter, loaded = open_checkpoint(nad_checkpoint)
    assert adapter.name == "nad" and loaded.arch == "wrn10-1"
    assert loaded.convention.num_classes == 10 and loaded.convention.mean is None
    out = tmp_path / "again.pth.tar"
    adapter.save(loaded, loaded.model, out)
    original, written = (torch.load(p, weights_only=True) for p in (nad_checkpoint, out))
    assert written.keys() == original.keys() and written["epoch"] == 3
    batch = torch.rand(4, 3, 16, 16)
    reloaded = open_checkpoint(out)[1].model
    assert torch.equal(loaded.model(batch), reloaded(batch))


def test_state_dict_of_a_wideresnet_needs_no_arch(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(tiny_wideresnet().state_dict(), path)
    adapter, loaded = open_checkpoint(path)
    assert adapter.name == "state_dict" and loaded.arch == "wrn10-1"
    out = tmp_path / "out.pt"
    adapter.save(loaded, loaded.model, out)
    assert torch.load(out, weights_only=True).keys() == torch.load(path, weights_only=True).keys()


def test_state_dict_with_wrong_arch(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(tiny_wideresnet().state_dict(), path)
    with pytest.raises(PurifyError, match="does not fit architecture resnet18: missing"):
        open_checkpoint(path, arch="resnet18")


def test_forced_format_that_does_not_fit(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(tiny_wideresnet().state_dict(), path)
    with pytest.raises(PurifyError, match="is not a 'nad' checkpoint"):
        open_checkpoint(path, format="nad")


@pytest.mark.parametrize(
    ("name", "suffix", "expected"),
    [
        ("nad.pth.tar", ".pth.tar", "nad.purified.pth.tar"),
        ("model.pt", ".pth", "model.purified.pt"),
        ("weights", ".pth", "weights.purified"),
    ],
)
def test_output_names(tmp_path, name, suffix, expected):
    assert default_output_path(tmp_path / name, suffix) == tmp_path / expected


def test_nad_container_with_a_broken_state_dict(tmp_path):
    state = tiny_wideresnet().state_dict()
    state["block1.layer.0.conv2.weight"] = torch.zeros(3, 3, 3, 3)
    path = tmp_path / "broken.pth.tar"
    torch.save({"epoch": 1, "state_dict": state}, path)
    with pytest.raises(
        PurifyError,
        match=r"does not fit architecture wrn10-1: shape \(1\): block1.layer.0.conv2.weight",
    ):
        open_checkpoint(path)
