import pytest
import torch

from purify_backdoor.checkpoints import open_checkpoint
from purify_backdoor.errors import PurifyError
from tests.conftest import tiny_wideresnet


@pytest.fixture
def scripted(tmp_path):
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.trace(tiny_wideresnet(), torch.zeros(1, 3, 32, 32)), path)
    return path


def test_needs_trust_then_arch(scripted):
    with pytest.raises(PurifyError, match="--trust-checkpoint"):
        open_checkpoint(scripted)
    with pytest.raises(PurifyError, match="--arch NAME"):
        open_checkpoint(scripted, trust=True)


def test_round_trip(scripted, tmp_path):
    adapter, loaded = open_checkpoint(scripted, trust=True, arch="wrn10-1")
    assert adapter.name == "torchscript"
    out = tmp_path / "again.pt"
    adapter.save(loaded, loaded.model, out)
    reloaded = open_checkpoint(out, trust=True, arch="wrn10-1")[1].model
    batch = torch.rand(3, 3, 32, 32)
    assert torch.equal(loaded.model(batch), reloaded(batch))
    assert torch.equal(loaded.model(batch), torch.jit.load(scripted)(batch))


def test_sniffing_never_hands_torchscript_to_torch_jit(scripted, monkeypatch):
    from purify_backdoor import CheckpointSource

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.jit.load was called without --trust-checkpoint")

    monkeypatch.setattr(torch.jit, "load", forbidden)
    source = CheckpointSource(scripted)
    assert source.payload() is None and "TorchScript" in source.load_error
    with pytest.raises(PurifyError, match="--trust-checkpoint"):
        open_checkpoint(scripted)
