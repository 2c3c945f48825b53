import numpy as np
import pytest

from purify_backdoor.data.clean_subset import clean_subset_indices
from purify_backdoor.errors import PurifyError

LABELS = np.repeat(np.arange(10), 100)


def test_ratio_is_stratified_and_seeded():
    chosen = clean_subset_indices(LABELS, seed=4, ratio=0.05)
    assert len(chosen) == 50 and len(set(chosen)) == 50
    assert np.bincount(LABELS[chosen], minlength=10).tolist() == [5] * 10
    assert np.array_equal(chosen, clean_subset_indices(LABELS, seed=4, ratio=0.05))
    assert not np.array_equal(chosen, clean_subset_indices(LABELS, seed=5, ratio=0.05))


def test_count_with_unequal_classes_keeps_every_class():
    labels = np.concatenate([np.zeros(900, int), np.ones(90, int), np.full(10, 2)])
    chosen = clean_subset_indices(labels, seed=0, count=20)
    counts = np.bincount(labels[chosen], minlength=3)
    assert counts.sum() == 20 and (counts >= 1).all()
    assert counts[0] > counts[1] >= counts[2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": 0.0}, "--ratio must be in \\(0, 1\\]"),
        ({"ratio": 1.5}, "--ratio must be in"),
        ({"count": 5}, "impossible with 1000 images in 10 classes"),
        ({"count": 1001}, "impossible"),
    ],
)
def test_impossible_requests(kwargs, message):
    with pytest.raises(PurifyError, match=message):
        clean_subset_indices(LABELS, seed=0, **kwargs)
