"""torchvision's CIFAR-10 and GTSRB roots, told by the folders and files torchvision itself
reads. (GTSRB opening is tested in tests/plugins/data/test_loading.py.)"""

from __future__ import annotations

import tarfile

import pytest

from purify_backdoor.builtin.torchvision_roots import CIFAR10_FILES, detect_cifar10, detect_gtsrb
from purify_backdoor.data.loading import open_data
from purify_backdoor.errors import PurifyError


def test_cifar10_root_is_told_by_its_batches_folder(tmp_path):
    assert not detect_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py").mkdir()
    assert not detect_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "batches.meta").write_bytes(b"not a pickle")
    assert detect_cifar10(tmp_path) and not detect_gtsrb(tmp_path)


def test_damaged_cifar10_root_is_one_line_naming_the_format(tmp_path):
    """torchvision refuses batches that fail its checksums; the user sees which format it was."""
    (tmp_path / "cifar-10-batches-py").mkdir()
    for name in CIFAR10_FILES:
        (tmp_path / "cifar-10-batches-py" / name).write_bytes(b"not a pickle")
    with pytest.raises(PurifyError, match="looks like 'cifar10' data but does not read"):
        open_data(tmp_path)


def test_the_cifar10_download_archive_is_its_root(tmp_path):
    """cifar-10-python.tar.gz holds `cifar-10-batches-py/`: extracted, it is a CIFAR-10 root."""
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    (batches / "batches.meta").write_bytes(b"not a pickle")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(batches, arcname="cifar-10-batches-py")
    with pytest.raises(PurifyError, match="incomplete CIFAR-10 download"):
        open_data(archive)


def test_gtsrb_root_is_told_by_its_training_folder(tmp_path):
    (tmp_path / "gtsrb").mkdir()
    assert not detect_gtsrb(tmp_path)
    (tmp_path / "gtsrb" / "GTSRB" / "Training").mkdir(parents=True)
    assert detect_gtsrb(tmp_path) and not detect_cifar10(tmp_path)


def test_an_incomplete_cifar10_root_is_one_line_naming_what_is_missing(tmp_path):
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    (batches / "batches.meta").write_bytes(b"")
    (batches / "data_batch_1").write_bytes(b"")
    with pytest.raises(PurifyError, match="incomplete CIFAR-10 download: data_batch_2, ") as raised:
        open_data(tmp_path)
    assert "\n" not in str(raised.value) and "test_batch" in str(raised.value)
