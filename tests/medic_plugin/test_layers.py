import torch
import torchvision
from torch import nn

from purify_backdoor.medic.layers import ActivationRecorder, cloned_layers
from purify_backdoor.models.wideresnet import WideResNet


def test_wrn16_1_hooks_the_25_tensors_of_the_reference():
    names = [name for name, _ in cloned_layers(WideResNet(16, 1, 10))]
    assert len(names) == 25 and names[0] == "conv1"
    assert not any("convShortcut" in name or name in ("bn1", "fc") for name in names)
    per_block = {"bn1", "conv1", "bn2", "conv2"}
    for block in ("block1.layer.0", "block2.layer.1", "block3.layer.0"):
        assert {name.split(".")[-1] for name in names if name.startswith(block)} == per_block


def test_torchvision_resnet_keeps_the_stem_norm_and_skips_downsample():
    names = [name for name, _ in cloned_layers(torchvision.models.resnet18(num_classes=10))]
    assert len(names) == 34 and names[:2] == ["conv1", "bn1"]
    assert not any("downsample" in name for name in names)
    assert len(cloned_layers(torchvision.models.resnet18(), "conv")) == 17


def test_recorder_sees_the_norm_output_not_the_inplace_relu():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True))
    model.eval()
    model[1].bias.data.fill_(-0.5)  # makes negative BN outputs certain
    recorder = ActivationRecorder([model[1]])
    out = model(torch.randn(2, 3, 8, 8))
    (recorded,) = recorder.take()
    assert (recorded < 0).any() and (out >= 0).all()
    recorder.remove()
    model(torch.randn(1, 3, 8, 8))
    assert recorder.take() == []


def test_calibration_copies_only_outputs_changed_in_place():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.Conv2d(4, 4, 3), nn.ReLU()
    ).eval()
    model[1].bias.data.fill_(-0.5)
    recorder = ActivationRecorder([model[0], model[1], model[3]])
    recorder.calibrate(model, torch.randn(2, 3, 8, 8))
    assert list(recorder.copy.values()) == [False, True, False]
    out = model(torch.randn(2, 3, 8, 8))
    conv, norm, _ = recorder.take()
    assert (norm < 0).any() and (out >= 0).all()
    assert torch.equal(model[1](conv), norm)


def test_torchvision_basic_block_residual_add_is_detected():
    model = torchvision.models.resnet18(num_classes=10).eval()
    names = dict(cloned_layers(model))
    recorder = ActivationRecorder(list(names.values()))
    recorder.calibrate(model, torch.randn(1, 3, 32, 32))
    flagged = {name for name, module in names.items() if recorder.copy[id(module)]}
    assert "bn1" in flagged and "layer1.0.bn2" in flagged  # in-place ReLU / `out += identity`
    assert "conv1" not in flagged and "layer1.0.conv1" not in flagged
