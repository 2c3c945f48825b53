"""The .npz format is told by its suffix and the zip magic every .npz starts with."""

from __future__ import annotations

import numpy as np

from purify_backdoor.builtin.npz_arrays import detect, load_npz


def test_detected_by_suffix_and_magic(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((2, 4, 4, 3), np.uint8), y=np.array([0, 1]))
    assert detect(path)
    (tmp_path / "fake.npz").write_text("x,y\n")
    assert not detect(tmp_path / "fake.npz")
    assert not detect(tmp_path)
    splits = load_npz(path)
    assert len(splits.train) == 2 and splits.test is None
