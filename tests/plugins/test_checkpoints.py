"""Hashing and sizing a folder checkpoint (the report's input sha256 and bytes, bench's stamps)."""

from __future__ import annotations

import hashlib
import os

from purify_backdoor.checkpoints import checkpoint_files, disk_bytes, file_sha256


def test_symlink_in_checkpoint_folder_is_never_followed_when_hashing(tmp_path):
    """Issue #45 item 5: links and special files in a folder are left out of its hash and size,
    never followed: a link to /dev/zero would hash forever, one to a file elsewhere would hash
    that file."""
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "weights.bin").write_bytes(b"weights")
    (tmp_path / "big.bin").write_bytes(b"x" * 100_000)
    (folder / "leak.bin").symlink_to(tmp_path / "big.bin")
    (folder / "zero").symlink_to("/dev/zero")
    (folder / "outside").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(folder / "pipe")
    assert checkpoint_files(folder) == [folder / "sub" / "weights.bin"]
    assert disk_bytes(folder) == len(b"weights")
    assert file_sha256(folder) == hashlib.sha256(b"weights").hexdigest()


def test_a_file_checkpoint_named_through_a_link_is_read(tmp_path):
    """The path the user names may be a link: the user chose it."""
    (tmp_path / "model.pt").write_bytes(b"weights")
    (tmp_path / "link.pt").symlink_to(tmp_path / "model.pt")
    assert file_sha256(tmp_path / "link.pt") == hashlib.sha256(b"weights").hexdigest()
