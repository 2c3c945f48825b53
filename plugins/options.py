"""Plugin options: declared once by the plugin, parsed the same way from `-o key=value`, typed
flags, attack specs and Python calls, so every entry point gives the same errors."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from purify_backdoor.errors import PurifyError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Bounds:
    """The numbers a setting may take, checked where it is parsed: a value outside (0 epochs, a
    negative batch size or learning rate) would otherwise run and hand back the input, or crash
    deep inside the defense. None leaves a side open-ended; `min_open`/`max_open` exclude the
    bound itself, as in click.FloatRange."""

    minimum: float | None = None
    maximum: float | None = None
    min_open: bool = False
    max_open: bool = False

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            return False
        if self.minimum is not None and not (
            value > self.minimum if self.min_open else value >= self.minimum
        ):
            return False
        return self.maximum is None or (
            value < self.maximum if self.max_open else value <= self.maximum
        )

    def __str__(self) -> str:
        low, high = _number(self.minimum), _number(self.maximum)
        if self.minimum is not None and self.maximum is not None:
            left, right = "(" if self.min_open else "[", ")" if self.max_open else "]"
            return f"in {left}{low}, {high}{right}"
        if self.minimum is not None:
            return f"{'>' if self.min_open else '>='} {low}"
        if self.maximum is not None:
            return f"{'<' if self.max_open else '<='} {high}"
        return "any number"


def _number(value: float | None) -> str:
    """A bound as people write it: 4294967295, not 4.29497e+09; 0.001, not 0.0010000."""
    return str(value) if value is None or isinstance(value, int) else f"{value:g}"


def at_least(minimum: float) -> Bounds:
    """minimum or more (counts, epochs, batch sizes, seeds)."""
    return Bounds(minimum)


def above(minimum: float) -> Bounds:
    """More than minimum, never minimum itself (learning rates, scales)."""
    return Bounds(minimum, min_open=True)


def between(
    minimum: float, maximum: float, *, min_open: bool = False, max_open: bool = False
) -> Bounds:
    """An interval (ratios, fractions, probabilities)."""
    return Bounds(minimum, maximum, min_open, max_open)


@dataclass(frozen=True)
class Option:
    """One setting a plugin accepts: `type` is int, float, str or bool; `choices` limits a str;
    `bounds` the numbers an int or float may take. A float is always finite."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    bounds: Bounds | None = None

    def __post_init__(self) -> None:
        if self.type not in (int, float, str, bool):
            raise TypeError(f"option {self.name!r}: type must be int, float, str or bool")
        if not self.name.isidentifier():
            raise ValueError(f"option name {self.name!r} must be a Python identifier")
        if self.bounds is not None:
            if self.type not in (int, float):
                raise TypeError(f"option {self.name!r}: only int and float options take bounds")
            if self.default not in self.bounds:
                raise ValueError(
                    f"option {self.name!r}: default {self.default!r} is not {self.bounds}"
                )

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def type_name(self) -> str:
        if self.choices:
            return "|".join(self.choices)
        return self.type.__name__

    @property
    def described(self) -> str:
        """The help text with the default and the valid numbers, as `--help` shows it."""
        valid = "" if self.bounds is None else f"; {self.bounds}"
        return f"{self.help}  [default: {self.default}{valid}]"

    def convert(self, value: Any, owner: str) -> Any:
        """Turn a raw value (usually a string from the command line) into this option's type,
        within its bounds: a bad value stops the run here, before any file is read."""
        try:
            converted = _convert(self.type, value)
        except (ValueError, TypeError, OverflowError):
            raise PurifyError(
                f"option '{self.name}' of {owner} expects {self.type_name}, got {_shown(value)}"
            ) from None
        if self.choices and converted not in self.choices:
            raise PurifyError(
                f"option '{self.name}' of {owner} must be one of {', '.join(self.choices)}; "
                f"got {converted!r}"
            )
        if self.type is float and not math.isfinite(converted):
            raise PurifyError(
                f"option '{self.name}' of {owner} expects a finite number, got {_shown(value)}; "
                f"e.g. -o {self.name}={self.default}"
            )
        if self.bounds is not None and converted not in self.bounds:
            raise PurifyError(
                f"option '{self.name}' of {owner} must be {self.bounds}, got {converted}; "
                f"e.g. -o {self.name}={self.default} (the default)"
            )
        return converted


def _shown(value: Any) -> str:
    """A value as an error line quotes it: repr, on one line and short (it may be any object)."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 60 else text[:57] + "..."


def _convert(kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(value)
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        return int(value) if not isinstance(value, str) else int(value.strip())
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)
    return str(value)


def resolve_options(declared: Iterable[Option], given: Mapping[str, Any], owner: str) -> dict:
    """Defaults overlaid with `given`; an unknown name is an error that lists the valid ones."""
    by_name = {option.name: option for option in declared}
    resolved = {name: option.default for name, option in by_name.items()}
    for raw_name, value in given.items():
        name = raw_name.replace("-", "_")
        if name not in by_name:
            valid = ", ".join(sorted(by_name)) or "(none)"
            raise PurifyError(f"unknown option '{raw_name}' for {owner}; valid options: {valid}")
        resolved[name] = by_name[name].convert(value, owner)
    return resolved


def parse_assignments(pairs: Iterable[str], what: str = "-o") -> dict[str, str]:
    """Parse `key=value` strings (from repeated `-o` flags or a comma-separated spec)."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise PurifyError(f"{what} expects key=value, got {pair!r}")
        parsed[key.strip()] = value.strip()
    return parsed


def options_from_settings(
    settings: type,
    help: Mapping[str, str],
    *,
    names: Mapping[str, str] | None = None,
    choices: Mapping[str, tuple[str, ...]] | None = None,
    bounds: Mapping[str, Bounds] | None = None,
) -> tuple[Option, ...]:
    """One option per field of a settings dataclass that `help` describes, in field order, so a
    plugin's defaults live in one place. `names` maps a field to the option name users type
    where the two differ; a tuple field is typed as comma-separated text; `bounds` gives a
    numeric field's valid values."""
    names, choices, bounds = names or {}, choices or {}, bounds or {}
    options = []
    for field in dataclasses.fields(settings):
        if field.name not in help:
            continue
        default = field.default
        if isinstance(default, tuple):
            default = ",".join(str(item) for item in default)
        options.append(
            Option(
                names.get(field.name, field.name),
                type(default),
                default,
                help[field.name],
                choices=choices.get(field.name),
                bounds=bounds.get(field.name),
            )
        )
    return tuple(options)


def settings_from_options(
    settings: type,
    options: Mapping[str, Any],
    *,
    names: Mapping[str, str] | None = None,
    **converted: Any,
) -> Any:
    """The settings dataclass from resolved options (the inverse of `options_from_settings`);
    `converted` gives fields whose option value needs parsing first (a comma-separated tuple)."""
    names = names or {}
    values = {
        field.name: options[names.get(field.name, field.name)]
        for field in dataclasses.fields(settings)
        if names.get(field.name, field.name) in options
    }
    return settings(**(values | converted))
