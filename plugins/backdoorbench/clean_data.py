"""The defender's clean data as BackdoorBench draws it (`utils/choose_index.py`): a uniform
draw of `ratio` of the clean train set, not stratified, or the indices of an `--index` file;
and the data set itself, found where BackdoorBench keeps it when `--data` is not given."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from purify_backdoor.data.imageset import ImageSet
from purify_backdoor.errors import PurifyError


def data_folder(
    given: Path | None, dataset_path: Path | None, dataset: str, recorded: Path | None
) -> Path:
    """`--data`, else BackdoorBench's `<dataset_path>/<dataset>` from the yaml, else the folder
    the record names (`data_path`, found by the adapter)."""
    if given is not None:
        return given
    if dataset_path is not None and (dataset_path / dataset).is_dir():
        return dataset_path / dataset
    if recorded is not None:
        return recorded
    raise PurifyError(
        f"no clean data for '{dataset}': the record's data_path is not here and there is no "
        f"./data/{dataset}; pass --data PATH (e.g. BackdoorBench's data/{dataset})"
    )


def clean_indices(train: ImageSet, ratio: float, index: Path | None, seed: int) -> np.ndarray:
    """`index` file's indices, or `int(len * ratio)` drawn uniformly without replacement."""
    size = len(train)
    if index is not None:
        if not index.is_file():
            raise PurifyError(f"--index {index} does not exist; pass a file of train indices")
        try:
            chosen = np.loadtxt(index, dtype=np.int64, ndmin=1)
        except ValueError as error:
            raise PurifyError(f"--index {index}: not one integer a line ({error})") from None
        if chosen.size == 0 or chosen.min() < 0 or chosen.max() >= size:
            raise PurifyError(
                f"--index {index} holds indices outside 0..{size - 1}; it was written for "
                f"another data set"
            )
        return chosen
    count = int(size * ratio)
    if not 0 < count <= size:
        raise PurifyError(f"--ratio {ratio} draws {count} of {size} images; pass 0 < ratio <= 1")
    return np.sort(np.random.default_rng(seed).choice(size, count, replace=False))
