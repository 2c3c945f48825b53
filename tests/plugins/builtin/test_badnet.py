import numpy as np
import pytest

from purify_backdoor.attack_spec import make_attack_spec, parse_attack_spec, poison_training_set
from purify_backdoor.data.synthetic import synthetic_images
from purify_backdoor.errors import PurifyError

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)


def test_grid_matches_the_shared_readme_pixel_for_pixel():
    out = parse_attack_spec("badnet:pattern=grid,target=5").stamp(IMAGES)
    assert out.dtype == np.uint8 and out.shape == IMAGES.shape
    w = h = 32
    expected = {
        (w - 1, h - 1): 255, (w - 1, h - 2): 0, (w - 1, h - 3): 255,
        (w - 2, h - 1): 0, (w - 2, h - 2): 255, (w - 2, h - 3): 0,
        (w - 3, h - 1): 255, (w - 3, h - 2): 0, (w - 3, h - 3): 0,
    }  # fmt: skip
    for (row, col), value in expected.items():
        assert (out[:, row, col, :] == value).all()
    untouched = np.ones((32, 32), bool)
    untouched[29:, 29:] = False
    assert np.array_equal(out[:, untouched], IMAGES[:, untouched])
    assert np.array_equal(out, parse_attack_spec("badnet:pattern=grid").stamp(IMAGES))


def test_patch_changes_only_its_square():
    spec = make_attack_spec(
        "badnet", {"pattern": "patch", "size": 4, "row": 2, "col": 3, "colour": "10,20,30"}
    )
    out = spec.stamp(IMAGES)
    assert (out[:, 2:6, 3:7] == [10, 20, 30]).all()
    mask = np.ones((32, 32), bool)
    mask[2:6, 3:7] = False
    assert np.array_equal(out[:, mask], IMAGES[:, mask])


@pytest.mark.parametrize("setting", ["size=40", "colour=1,2", "row=30"])
def test_bad_patch_settings(setting):
    with pytest.raises(PurifyError):
        parse_attack_spec(f"badnet:pattern=patch,{setting}").stamp(IMAGES)


def test_poisoning_all_to_one():
    data = synthetic_images(200, 16, seed=0)
    spec = parse_attack_spec("badnet:target=3")
    poisoned, chosen = poison_training_set(data, spec, ratio=0.1, seed=0)
    assert len(chosen) == 20
    assert (data.labels[chosen] != 3).all() and (poisoned.labels[chosen] == 3).all()
    rest = np.setdiff1d(np.arange(200), chosen)
    assert np.array_equal(poisoned.images[rest], data.images[rest])
    assert np.array_equal(poisoned.images[chosen], spec.stamp(data.images[chosen]))


def test_all_to_all_relabels_to_the_next_class():
    data = synthetic_images(100, 16, seed=0)
    spec = parse_attack_spec("badnet:all_to_all=true")
    poisoned, chosen = poison_training_set(data, spec, ratio=0.2, seed=1)
    assert np.array_equal(poisoned.labels[chosen], (data.labels[chosen] + 1) % 10)
