"""Stamping after augmentation: the trigger lands where the test-time trigger is, on exactly the
poisoned images of each batch."""

from __future__ import annotations

import numpy as np
import torch

from plugins.attack_spec import parse_attack_spec, poison_training_set, stamp_after_augment
from plugins.builtin.badnet import NAD_GRID
from plugins.data.synthetic import synthetic_images
from plugins.data.tensors import random_crop_flip, to_tensor


def test_late_stamping_relabels_now_and_stamps_augmented_batches():
    data = synthetic_images(40, 16, seed=0)
    spec = parse_attack_spec("badnet:pattern=grid,target=3")
    unstamped, chosen = poison_training_set(data, spec, 0.25, seed=0, stamp=False)
    assert np.array_equal(unstamped.images, data.images)
    assert (unstamped.labels[chosen] == 3).all()

    hook = stamp_after_augment(spec, chosen, len(data))
    index = torch.arange(40)
    augmented = random_crop_flip(to_tensor(unstamped.images), torch.Generator().manual_seed(0))
    stamped = hook(augmented, index)
    corner = (stamped[:, 0, -3:, -3:] * 255).round().numpy()
    poisoned = np.isin(np.arange(40), chosen)
    assert (corner[poisoned] == NAD_GRID).all()
    assert torch.equal(stamped[~torch.from_numpy(poisoned)], augmented[~torch.from_numpy(poisoned)])
    assert torch.equal(stamped[:, :, :-3], augmented[:, :, :-3])
