import numpy as np
import torch

from purify_backdoor.data.tensors import random_crop_flip, random_rotate, to_tensor


def test_to_tensor_layout_and_range():
    images = np.zeros((2, 4, 5, 3), np.uint8)
    images[1, 0, 0, 2] = 255
    tensor = to_tensor(images)
    assert tensor.shape == (2, 3, 4, 5) and tensor.dtype == torch.float32
    assert tensor[1, 2, 0, 0] == 1.0 and tensor.sum() == 1.0


def test_crop_is_a_shift_within_the_padding():
    batch = torch.rand(16, 3, 8, 8)
    out = random_crop_flip(batch, torch.Generator().manual_seed(0), padding=2, flip=False)
    assert out.shape == batch.shape
    for original, cropped in zip(batch, out, strict=True):
        padded = torch.nn.functional.pad(original, (2, 2, 2, 2))
        windows = [padded[:, y : y + 8, x : x + 8] for y in range(5) for x in range(5)]
        assert any(torch.equal(cropped, window) for window in windows)


def test_flip_without_padding_mirrors_some_images():
    batch = torch.rand(32, 3, 6, 6)
    out = random_crop_flip(batch, torch.Generator().manual_seed(1), padding=0)
    flipped = [torch.equal(o, b.flip(-1)) for o, b in zip(out, batch, strict=True)]
    kept = [torch.equal(o, b) for o, b in zip(out, batch, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and any(flipped) and any(kept)


def test_zero_rotation_is_identity():
    batch = torch.rand(4, 3, 8, 8)
    assert torch.allclose(random_rotate(batch, torch.Generator(), 0.0), batch, atol=1e-6)
