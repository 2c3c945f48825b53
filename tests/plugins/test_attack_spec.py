"""Stamping after augmentation: the trigger lands where the test-time trigger is, on exactly the
poisoned images of each batch; per-batch poisoning draws a fresh share of every batch."""

from __future__ import annotations

import numpy as np
import torch

from purify_backdoor.attack_spec import (
    parse_attack_spec,
    poison_each_batch,
    poison_training_set,
    stamp_after_augment,
)
from purify_backdoor.builtin.badnet import NAD_GRID
from purify_backdoor.data.synthetic import synthetic_images
from purify_backdoor.data.tensors import random_crop_flip, to_tensor


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


def _poison_once(spec_text: str, ratio: float, seed: int = 0):
    """One synthetic batch of 100 through a per-batch poisoning hook: the spec, the batch and
    labels before, and the batch and labels after."""
    data = synthetic_images(100, 16, seed=0)
    spec = parse_attack_spec(spec_text)
    hook = poison_each_batch(spec, ratio, data.num_classes)
    batch, labels = to_tensor(data.images), torch.from_numpy(data.labels)
    generator = torch.Generator().manual_seed(seed)
    out, new_labels = hook(batch, labels, torch.arange(len(batch)), generator)
    assert torch.equal(batch, to_tensor(data.images))  # the input batch is left alone
    return spec, batch, labels, out, new_labels


def test_each_batch_gets_a_fresh_poisoned_share_and_noise_images_keep_their_labels():
    spec, batch, labels, out, new_labels = _poison_once("wanet:target=3", 0.1)
    relabelled = (new_labels != labels).nonzero().flatten()
    changed = (out != batch).flatten(1).any(1)
    warped = (out * 255).round().byte().permute(0, 2, 3, 1).numpy()
    stamped = spec.stamp((batch * 255).round().byte().permute(0, 2, 3, 1).numpy())
    exact = np.array([np.array_equal(w, s) for w, s in zip(warped, stamped, strict=True)])
    assert len(relabelled) == 10 and (new_labels[relabelled] == 3).all()
    assert (labels[relabelled] != 3).all()
    assert set(np.flatnonzero(exact)) >= set(relabelled.tolist())
    assert (changed & (new_labels == labels)).sum() == 20  # cross ratio 2: noise, labels kept
    assert changed.sum() == 30
    *_, again, _ = _poison_once("wanet:target=3", 0.1)
    *_, other_labels = _poison_once("wanet:target=3", 0.1, seed=1)
    assert torch.equal(out, again)
    assert not torch.equal(new_labels, other_labels)


def test_each_batch_clean_label_poisoning_keeps_labels_and_picks_the_target_class():
    _, batch, labels, out, new_labels = _poison_once("sig:target=2", 0.05)
    changed = (out != batch).flatten(1).any(1)
    assert torch.equal(new_labels, labels)
    assert changed.sum() == 5 and (labels[changed] == 2).all()
