import dataclasses

import pytest

from purify_backdoor.attack_spec import attack_options
from purify_backdoor.errors import PurifyError
from purify_backdoor.manager import collect, lookup
from purify_backdoor.options import (
    Option,
    above,
    at_least,
    between,
    options_from_settings,
    parse_assignments,
    resolve_options,
    settings_from_options,
)

DECLARED = (
    Option("tau", float, 5.0, "temperature"),
    Option("epochs", int, 60, "epochs"),
    Option("hooks", str, "conv+bn", "layers", choices=("conv", "bn", "conv+bn")),
    Option("keep_stats", bool, True, "freeze statistics"),
)


def test_defaults_are_filled_and_values_converted():
    resolved = resolve_options(DECLARED, {"tau": "0.5", "keep-stats": "no"}, "defense 'x'")
    assert resolved == {"tau": 0.5, "epochs": 60, "hooks": "conv+bn", "keep_stats": False}


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(PurifyError, match="unknown option 'tua'.*valid options: epochs, hooks"):
        resolve_options(DECLARED, {"tua": "1"}, "defense 'x'")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"epochs": "ten"}, "expects int, got 'ten'"),
        ({"epochs": "2.5"}, "expects int"),
        ({"tau": "hot"}, "expects float"),
        ({"keep_stats": "maybe"}, "expects bool"),
        ({"hooks": "fc"}, "must be one of conv, bn, conv\\+bn"),
    ],
)
def test_ill_typed_values_are_rejected(given, message):
    with pytest.raises(PurifyError, match=message):
        resolve_options(DECLARED, given, "defense 'x'")


def test_typed_python_values_pass_through():
    assert resolve_options(DECLARED, {"epochs": 3, "keep_stats": True}, "d")["epochs"] == 3


def test_assignments_need_an_equals_sign():
    assert parse_assignments(["a=1", " b = x=y "]) == {"a": "1", "b": "x=y"}
    with pytest.raises(PurifyError, match="key=value"):
        parse_assignments(["tau"])


def test_option_declarations_are_checked():
    with pytest.raises(TypeError):
        Option("x", list, [], "lists are not supported")
    with pytest.raises(ValueError):
        Option("not-an-identifier", int, 1, "")


@dataclasses.dataclass(frozen=True)
class Settings:
    steps: int = 100
    mode: str = "a"
    staircase: tuple[float, ...] = (0.5, 0.9)
    internal: float = 1e-3


def test_options_from_a_settings_dataclass_and_back():
    options = options_from_settings(
        Settings,
        {"steps": "how many", "mode": "which", "staircase": "thresholds"},
        names={"steps": "generator_steps"},
        choices={"mode": ("a", "b")},
    )
    assert [(o.name, o.type, o.default) for o in options] == [
        ("generator_steps", int, 100), ("mode", str, "a"), ("staircase", str, "0.5,0.9")
    ]  # fmt: skip
    assert options[1].choices == ("a", "b")
    resolved = resolve_options(options, {"generator_steps": "7"}, "test")
    settings = settings_from_options(
        Settings, resolved, names={"steps": "generator_steps"}, staircase=(0.1,)
    )
    assert settings == Settings(steps=7, mode="a", staircase=(0.1,), internal=1e-3)


BOUNDED = (
    Option("epochs", int, 10, "epochs", bounds=at_least(1)),
    Option("lr", float, 0.01, "learning rate", bounds=above(0)),
    Option("holdout", float, 0.2, "fraction", bounds=between(0, 1, min_open=True, max_open=True)),
    Option("u", float, 3.0, "any real"),
)


def test_epochs_zero_is_refused_at_parse_time():
    finetune = lookup("defense", "finetune")
    with pytest.raises(PurifyError, match=r"'epochs' of defense 'finetune' must be >= 1, got 0;"):
        resolve_options(finetune.options, {"epochs": "0"}, "defense 'finetune'")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            {"epochs": "-1"},
            r"'epochs' of d must be >= 1, got -1; e.g. -o epochs=10 \(the default\)",
        ),
        ({"lr": "0"}, r"'lr' of d must be > 0, got 0.0"),
        ({"lr": "-1"}, r"'lr' of d must be > 0, got -1.0"),
        ({"holdout": "0"}, r"'holdout' of d must be in \(0, 1\), got 0.0"),
        ({"holdout": "1"}, r"'holdout' of d must be in \(0, 1\), got 1.0"),
        ({"lr": "nan"}, r"'lr' of d expects a finite number, got 'nan'"),
        ({"u": "inf"}, r"'u' of d expects a finite number, got 'inf'"),
        ({"u": "1e400"}, r"'u' of d expects a finite number"),
        ({"epochs": [1]}, r"'epochs' of d expects int, got \[1\]"),
        ({"lr": None}, r"'lr' of d expects float, got None"),
    ],
)
def test_values_outside_the_declared_bounds_are_one_line_errors(given, message):
    with pytest.raises(PurifyError, match=message) as error:
        resolve_options(BOUNDED, given, "d")
    assert "\n" not in error.value.format_message()


def test_the_bounds_themselves_are_valid_where_closed():
    resolved = resolve_options(BOUNDED, {"epochs": "1", "lr": "1e-9", "holdout": "0.5"}, "d")
    assert resolved == {"epochs": 1, "lr": 1e-9, "holdout": 0.5, "u": 3.0}
    assert resolve_options(BOUNDED, {"u": "-100"}, "d")["u"] == -100.0


def test_bounds_are_shown_in_the_help_and_checked_against_the_default():
    assert BOUNDED[2].described == "fraction  [default: 0.2; in (0, 1)]"
    assert BOUNDED[3].described == "any real  [default: 3.0]"
    assert str(between(0, 2**32 - 1)) == "in [0, 4294967295]"
    with pytest.raises(ValueError, match="default 0 is not >= 1"):
        Option("epochs", int, 0, "epochs", bounds=at_least(1))
    with pytest.raises(TypeError, match="only int and float options take bounds"):
        Option("mode", str, "a", "mode", bounds=at_least(1))


def test_options_from_settings_carries_the_bounds():
    options = options_from_settings(
        Settings, {"steps": "how many", "mode": "which"}, bounds={"steps": at_least(1)}
    )
    assert options[0].bounds == at_least(1) and options[1].bounds is None
    with pytest.raises(PurifyError, match="'steps' of test must be >= 1, got 0"):
        resolve_options(options, {"steps": "0"}, "test")


@pytest.mark.parametrize("kind", ["defense", "attack"])
def test_every_shipped_numeric_option_declares_its_bounds(kind):
    """clp's `u` is the one real number a method takes unbounded (negative prunes everything)."""
    unbounded = {"clp.u"}
    for name, entry in collect(kind).items():
        declared = attack_options(entry.item) if kind == "attack" else entry.item.options
        for option in declared:
            if option.type in (int, float) and f"{name}.{option.name}" not in unbounded:
                assert option.bounds is not None, f"{kind} {name}: {option.name}"
