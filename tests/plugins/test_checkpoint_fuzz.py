"""Property-based fuzzing of checkpoint detection and loading: random bytes, damaged copies of a
real checkpoint and random dict structures either load or raise PurifyError, never anything else.
`--hypothesis-show-statistics` (set in pyproject) prints how many cases each test tried."""

from __future__ import annotations

import io
import string

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from purify_backdoor.checkpoints import open_checkpoint
from purify_backdoor.errors import PurifyError
from tests.conftest import tiny_wideresnet

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Keys the adapters look for, so random structures reach past the first membership test.
KEYS = [
    "state_dict", "model", "model_name", "num_classes", "img_size", "clean_data", "bd_test",
    "epoch", "purify_attack", "fc.weight", "fc.bias", "conv1.weight", "module.fc.weight",
    "block1.layer.0.conv1.weight", "block1.layer.0.bn1.weight", "bn1.running_mean",
]  # fmt: skip


def tiny_checkpoint_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"epoch": 1, "state_dict": tiny_wideresnet().state_dict()}, buffer)
    return buffer.getvalue()


VALID = tiny_checkpoint_bytes()

tensors = st.builds(
    lambda shape, fill: torch.full(shape, fill),
    st.lists(st.integers(0, 4), max_size=4).map(tuple),
    st.floats(-2, 2),
)
leaves = st.one_of(
    st.none(), st.integers(-5, 100), st.floats(allow_nan=True), st.text(max_size=8),
    st.sampled_from(["cifar10", "gtsrb", "wrn16-1", "preactresnet18"]), tensors,
)  # fmt: skip
structures = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.sampled_from(KEYS) | st.text(string.ascii_letters, max_size=6), children, max_size=5
        ),
    ),  # fmt: skip
    max_leaves=12,
)


def outcome(path, arch=None) -> str:
    """Load the file the way `purify` does; any exception but PurifyError fails the test."""
    try:
        open_checkpoint(path, arch=arch)
    except PurifyError as error:
        message = error.format_message()
        assert "\n" not in message and message, message
        return "refused"
    return "loaded"


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(tmp_path, data):
    path = tmp_path / "random.pth"
    path.write_bytes(data)
    assert outcome(path) in {"loaded", "refused"}


@FUZZ
@given(st.integers(0, len(VALID) - 1))
def test_truncated_checkpoint_is_refused(tmp_path, cut):
    path = tmp_path / "cut.pth.tar"
    path.write_bytes(VALID[:cut])
    assert outcome(path) == "refused"


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(1, 255)), min_size=1))
def test_damaged_checkpoint_loads_or_is_refused(tmp_path, flips):
    damaged = bytearray(VALID)
    for position, mask in flips:
        damaged[position] ^= mask
    path = tmp_path / "damaged.pth.tar"
    path.write_bytes(bytes(damaged))
    assert outcome(path) in {"loaded", "refused"}


@FUZZ
@given(structures, st.sampled_from([None, "wrn10-1", "wrn16-1"]))
def test_random_structures(tmp_path, payload, arch):
    path = tmp_path / "structure.pt"
    torch.save(payload, path)
    assert outcome(path, arch) in {"loaded", "refused"}
