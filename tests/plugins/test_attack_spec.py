"""Stamping after augmentation: the trigger lands where the test-time trigger is, on exactly the
poisoned images of each batch; per-batch poisoning draws a fresh share of every batch."""

from __future__ import annotations

import numpy as np
import torch

from plugins.attack_spec import (
    parse_attack_spec,
    poison_each_batch,
    poison_training_set,
    stamp_after_augment,
)
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
    stamped, labels = hook(augmented, torch.from_numpy(unstamped.labels), index, None)
    assert np.array_equal(labels.numpy(), unstamped.labels)
    corner = (stamped[:, 0, -3:, -3:] * 255).round().numpy()
    poisoned = np.isin(np.arange(40), chosen)
    assert (corner[poisoned] == NAD_GRID).all()
    assert torch.equal(stamped[~torch.from_numpy(poisoned)], augmented[~torch.from_numpy(poisoned)])
    assert torch.equal(stamped[:, :, :-3], augmented[:, :, :-3])


def _wanet_batch(hook, batch, labels, seed):
    return hook(batch, labels, torch.arange(len(batch)), torch.Generator().manual_seed(seed))


def test_each_batch_gets_a_fresh_poisoned_share_and_noise_images_keep_their_labels():
    data = synthetic_images(100, 16, seed=0)
    spec = parse_attack_spec("wanet:target=3")
    hook = poison_each_batch(spec, 0.1, data.num_classes)
    batch, labels = to_tensor(data.images), torch.from_numpy(data.labels)
    out, new_labels = _wanet_batch(hook, batch, labels, seed=0)
    relabelled = (new_labels != labels).nonzero().flatten()
    changed = (out != batch).flatten(1).any(1)
    warped = (out * 255).round().byte().permute(0, 2, 3, 1).numpy()
    stamped = spec.stamp(data.images)
    exact = np.array([np.array_equal(w, s) for w, s in zip(warped, stamped, strict=True)])
    assert len(relabelled) == 10 and (new_labels[relabelled] == 3).all()
    assert set(np.flatnonzero(exact)) >= set(relabelled.tolist())
    assert (labels[relabelled] != 3).all()
    assert changed.sum() == 10 + 20  # cross ratio 2: twenty noise-warped images, labels kept
    assert (
        new_labels[changed & (new_labels == labels)] == labels[changed & (new_labels == labels)]
    ).all()
    again, _ = _wanet_batch(hook, batch, labels, seed=0)
    other, other_labels = _wanet_batch(hook, batch, labels, seed=1)
    assert torch.equal(out, again)
    assert not torch.equal(new_labels, other_labels)
    assert torch.equal(batch, to_tensor(data.images))


def test_each_batch_clean_label_poisoning_keeps_labels_and_picks_the_target_class():
    data = synthetic_images(100, 16, seed=0)
    spec = parse_attack_spec("sig:target=2")
    hook = poison_each_batch(spec, 0.05, data.num_classes)
    batch, labels = to_tensor(data.images), torch.from_numpy(data.labels)
    out, new_labels = _wanet_batch(hook, batch, labels, seed=0)
    changed = (out != batch).flatten(1).any(1)
    assert torch.equal(new_labels, labels)
    assert changed.sum() == 5 and (labels[changed] == 2).all()
