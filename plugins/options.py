"""Plugin options: declared once by the plugin, parsed the same way from `-o key=value`, typed
flags, attack specs and Python calls, so every entry point gives the same errors."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from purify_backdoor.errors import PurifyError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Option:
    """One setting a plugin accepts: `type` is int, float, str or bool; `choices` limits a str."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.type not in (int, float, str, bool):
            raise TypeError(f"option {self.name!r}: type must be int, float, str or bool")
        if not self.name.isidentifier():
            raise ValueError(f"option name {self.name!r} must be a Python identifier")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def type_name(self) -> str:
        if self.choices:
            return "|".join(self.choices)
        return self.type.__name__

    def convert(self, value: Any, owner: str) -> Any:
        """Turn a raw value (usually a string from the command line) into this option's type."""
        try:
            converted = _convert(self.type, value)
        except ValueError:
            raise PurifyError(
                f"option '{self.name}' of {owner} expects {self.type_name}, got {value!r}"
            ) from None
        if self.choices and converted not in self.choices:
            raise PurifyError(
                f"option '{self.name}' of {owner} must be one of {', '.join(self.choices)}; "
                f"got {converted!r}"
            )
        return converted


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
) -> tuple[Option, ...]:
    """One option per field of a settings dataclass that `help` describes, in field order, so a
    plugin's defaults live in one place. `names` maps a field to the option name users type
    where the two differ; a tuple field is typed as comma-separated text."""
    names, choices = names or {}, choices or {}
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
