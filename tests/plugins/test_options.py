import dataclasses

import pytest

from purify_backdoor.errors import PurifyError
from purify_backdoor.options import (
    Option,
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
