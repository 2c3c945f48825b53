"""--normalize, --mean/--std, --bgr and --input-scale replace the adapter's input convention."""

from __future__ import annotations

import pytest
import torch

from purify_backdoor.checkpoints import open_checkpoint
from purify_backdoor.errors import PurifyError
from purify_backdoor.input_overrides import InputOverride, apply_override, parse_channels
from purify_backdoor.models.normalized import unwrap


def test_override_wraps_the_stored_network_in_the_given_convention(nad_checkpoint):
    _, loaded = open_checkpoint(nad_checkpoint)
    override = InputOverride(normalize="imagenet", bgr=True, scale=255.0)
    changed = apply_override(loaded, override)
    assert unwrap(changed.model) is unwrap(loaded.model)
    assert changed.convention.bgr and changed.convention.scale == 255.0
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    expected = loaded.model((255 * x.flip(1) - mean) / std)
    assert torch.allclose(changed.model(x), expected)


def test_no_override_leaves_the_model_alone(nad_checkpoint):
    _, loaded = open_checkpoint(nad_checkpoint)
    assert apply_override(loaded, InputOverride()) is loaded


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (InputOverride(normalize="svhn"), "unknown --normalize 'svhn'"),
        (InputOverride(mean=(0.5, 0.5, 0.5)), "--mean and --std go together"),
        (InputOverride(normalize="cifar10", mean=(0, 0, 0), std=(1, 1, 1)), "keep one of them"),
        (InputOverride(mean=(0, 0, 0), std=(1, 0, 1)), "--std must be positive"),
    ],
)
def test_bad_overrides_are_one_line_errors(nad_checkpoint, override, message):
    _, loaded = open_checkpoint(nad_checkpoint)
    with pytest.raises(PurifyError, match=message):
        apply_override(loaded, override)


def test_channels_parse_as_three_numbers():
    assert parse_channels("0.5,0.4,0.3", "--mean") == (0.5, 0.4, 0.3)
    with pytest.raises(PurifyError, match="three comma-separated numbers"):
        parse_channels("0.5,0.4", "--mean")
