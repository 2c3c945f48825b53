"""Property-based test of every shipped plugin's option parser (issue #45): out-of-range,
non-finite and ill-typed values, as text from `-o` or as Python objects from `defend()`, are
either accepted because they are valid or refused with a one-line PurifyError, never another
exception; and one command line showing that such a value writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from purify_backdoor.attack_spec import attack_options
from purify_backdoor.cli import cli
from purify_backdoor.errors import PurifyError
from purify_backdoor.manager import KINDS, collect
from purify_backdoor.options import Option, resolve_options
from tests.plugins.test_bad_input import valid
from tests.plugins.test_cli import assert_one_line_error

PROPERTIES = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def declared_options() -> list[tuple[str, tuple[Option, ...], Option]]:
    """(owner, everything the plugin declares, one option) for every option of every installed
    plugin of every kind; attacks with the options every attack shares."""
    found = []
    for kind in KINDS:
        for name, entry in collect(kind).items():
            declared = attack_options(entry.item) if kind == "attack" else entry.item.options
            found += [(f"{kind} '{name}'", declared, option) for option in declared]
    return found


OPTIONS = declared_options()

# Text as `-o key=value` and attack specs hand it over: numbers at and beyond every bound used,
# spellings of non-finite floats, and garbage.
EDGES = ["0", "-0", "1", "-1", "0.0", "1.0", "0.5", "-4", "1e-300", "255", "256", "180", "100"]
SPELLINGS = ["nan", "NaN", "inf", "-inf", "1e400", "-1e400", "1e3", "0x10", "1_000", " 7 ", ""]
texts = st.one_of(
    st.sampled_from(EDGES + SPELLINGS + ["true", "off", "maybe", "auto", "3,5", "grid"]),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=12),
)
# Python objects as `defend(..., options={...})` may pass them.
objects = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    st.binary(max_size=4),
    st.complex_numbers(max_magnitude=10),
)


def check_outcome(declared: tuple[Option, ...], option: Option, owner: str, value: Any) -> None:
    """Accepted and valid, or refused in one line: anything else fails the test."""
    try:
        resolved = resolve_options(declared, {option.name: value}, owner)
    except PurifyError as error:
        message = error.format_message()
        assert message and "\n" not in message and option.name in message, message
        return
    accepted = resolved[option.name]
    assert type(accepted) is option.type, (value, accepted)
    if option.type is float:
        assert accepted == accepted and abs(accepted) != float("inf"), (value, accepted)
    if option.bounds is not None:
        assert accepted in option.bounds, (value, accepted)
    if option.choices:
        assert accepted in option.choices, (value, accepted)


@PROPERTIES
@given(choice=st.sampled_from(OPTIONS), value=texts)
def test_every_option_refuses_bad_text_in_one_line(choice, value):
    owner, declared, option = choice
    check_outcome(declared, option, owner, value)


@PROPERTIES
@given(choice=st.sampled_from(OPTIONS), value=objects)
def test_every_option_refuses_bad_python_values_in_one_line(choice, value):
    owner, declared, option = choice
    check_outcome(declared, option, owner, value)


@PROPERTIES
@given(
    choice=st.sampled_from([c for c in OPTIONS if c[2].bounds is not None]),
    step=st.sampled_from([-1, -0.5, -1e-9]),
)
def test_just_outside_a_bound_is_refused(choice, step):
    """One step below a minimum (or above a maximum) never gets through."""
    owner, declared, option = choice
    bounds = option.bounds
    outside = []
    if bounds.minimum is not None:
        outside.append(bounds.minimum + (0 if bounds.min_open else step))
    if bounds.maximum is not None:
        outside.append(bounds.maximum - (0 if bounds.max_open else step))
    for value in outside:
        if option.type is int and not float(value).is_integer():
            continue
        with pytest.raises(PurifyError, match=f"'{option.name}' of {owner}"):
            resolve_options(declared, {option.name: option.type(value)}, owner)


@pytest.mark.parametrize("flag", [["--epochs", "0"], ["-o", "batch_size=-4"], ["--lr", "-1"]])
def test_an_out_of_range_value_on_the_command_line_is_one_line_and_writes_nothing(
    tmp_path, tiny_data, flag
):
    model = valid(tmp_path)
    result = CliRunner().invoke(
        cli, ["--plugin", "finetune", str(model), "--data", str(tiny_data), "-q", *flag]
    )
    assert_one_line_error(result, "of defense 'finetune' must be")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.pth.tar"]
