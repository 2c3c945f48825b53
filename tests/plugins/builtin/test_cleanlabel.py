import numpy as np
import torch

from purify_backdoor.attack_spec import parse_attack_spec, poison_training_set
from purify_backdoor.builtin.badnet import NAD_GRID
from purify_backdoor.data.synthetic import synthetic_images
from purify_backdoor.plugin_types import RunContext


def test_trigger_in_all_four_corners_survives_a_flip():
    images = np.full((2, 32, 32, 3), 128, np.uint8)
    out = parse_attack_spec("cleanlabel").stamp(images)
    assert (out[:, -3:, -3:, 0] == NAD_GRID).all()
    assert np.array_equal(out[:, :, ::-1], out)  # mirrored left corners: flip-invariant
    assert (out[:, 3:-3] == 128).all() and (out[:, :, 3:-3] == 128).all()


def test_poisoning_perturbs_target_images_and_keeps_labels():
    data = synthetic_images(120, 16, seed=0)
    spec = parse_attack_spec("cleanlabel:target=2,surrogate_arch=wrn10-1,surrogate_epochs=1")
    context = RunContext(torch.device("cpu"), seed=0, quiet=True)
    poisoned, chosen = poison_training_set(data, spec, ratio=0.05, seed=0, context=context)
    assert len(chosen) == 6 and (data.labels[chosen] == 2).all()
    assert np.array_equal(poisoned.labels, data.labels)
    centre = (slice(None), slice(3, -3), slice(3, -3))
    difference = np.abs(poisoned.images[chosen].astype(int) - data.images[chosen].astype(int))
    assert 0 < difference[centre].max() <= 9  # 8/255 plus rounding
