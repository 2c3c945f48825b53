"""Plugin discovery and the registries built from it.

Shipped plugins and third-party ones load the same way: from the `purify` entry-point group.
"""

from __future__ import annotations

import functools
import importlib.metadata
from dataclasses import dataclass
from typing import Any

import pluggy

from purify_backdoor import hookspecs
from purify_backdoor.errors import PurifyError
from purify_backdoor.plugin_types import Adapter, Attack, DataFormat, Defense, Evaluator

ENTRY_POINT_GROUP = "purify"

KINDS: dict[str, tuple[str, type]] = {
    "defense": ("register_defenses", Defense),
    "attack": ("register_attacks", Attack),
    "evaluator": ("register_evaluators", Evaluator),
    "adapter": ("register_adapters", Adapter),
    "dataset": ("register_datasets", DataFormat),
}


# kind -> names a plugin option of that kind may not take: the flags of the command that turns
# that kind's options into flags. The CLI fills it when it is built (`reserve_option_names`), so
# the manager never imports the CLI; a library caller without the CLI has no flags to clash with.
RESERVED_OPTION_NAMES: dict[str, frozenset[str]] = {}


def reserve_option_names(kind: str, names: frozenset[str]) -> None:
    """Keep plugin options of `kind` off `names` (a command's own flags)."""
    RESERVED_OPTION_NAMES[kind] = RESERVED_OPTION_NAMES.get(kind, frozenset()) | names


@dataclass(frozen=True)
class Registered:
    """One registered plugin object and where it came from."""

    kind: str
    item: Any
    package: str
    version: str


def new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
    manager.add_hookspecs(hookspecs)
    return manager


@functools.cache
def get_manager() -> pluggy.PluginManager:
    """The process-wide manager with every installed plugin loaded and checked."""
    manager = new_manager()
    load_plugins(manager)
    return manager


def load_plugins(manager: pluggy.PluginManager) -> None:
    """Every entry point of the `purify` group, checked against the hookspecs. One broken
    third-party package would otherwise stop every `purify` command with a traceback from deep
    inside pluggy; the error names the package so the user can fix or remove it."""
    try:
        manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    except Exception as error:
        raise PurifyError(_broken_entry_point(error)) from error
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as error:
        package = _module_package(error.plugin)
        raise PurifyError(
            f"plugin package {package} implements a hook purify does not have ({error}); "
            f"update or uninstall {package}"
        ) from error


def _broken_entry_point(error: Exception) -> str:
    detail = f"{type(error).__name__}: {' '.join(str(error).split())}"
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry_point.load()
        except Exception:
            package = entry_point.dist.name if entry_point.dist else entry_point.value
            return (
                f"plugin '{entry_point.name}' ({entry_point.value}) from package {package} "
                f"failed to load ({detail}); reinstall or uninstall {package}"
            )
    return f"a purify plugin failed to load ({detail}); reinstall or uninstall it"


def _origins(manager: pluggy.PluginManager) -> dict[int, tuple[str, str]]:
    return {
        id(plugin): (dist.project_name, dist.version)
        for plugin, dist in manager.list_plugin_distinfo()
    }


def collect(kind: str, manager: pluggy.PluginManager | None = None) -> dict[str, Registered]:
    """Call every implementation of the kind's hook; a name registered twice is an error naming
    both packages."""
    manager = manager or get_manager()
    hook_name, expected = KINDS[kind]
    origins = _origins(manager)
    reserved = RESERVED_OPTION_NAMES.get(kind, frozenset())
    found: dict[str, Registered] = {}
    for impl in getattr(manager.hook, hook_name).get_hookimpls():
        package, version = origins.get(id(impl.plugin), (_module_package(impl.plugin), ""))

        def register(item: Any, package: str = package, version: str = version) -> None:
            if not isinstance(item, expected):
                raise TypeError(f"{package}: {hook_name} must register {expected.__name__} objects")
            _check_option_names(kind, item, package, reserved)
            if item.name in found:
                first = found[item.name].package
                raise PurifyError(
                    f"{kind} '{item.name}' is registered twice, by {first} and by {package}; "
                    f"uninstall one of them"
                )
            found[item.name] = Registered(kind, item, package, version)

        impl.function(register=register)
    return found


def _module_package(plugin: Any) -> str:
    name = getattr(plugin, "__name__", None) or type(plugin).__module__
    return name.split(".")[0]


def _check_option_names(kind: str, item: Any, package: str, reserved: frozenset[str]) -> None:
    """A plugin option named like one of the host's own flags could never be set from the CLI."""
    clashes = [o.name for o in item.options if o.name in reserved]
    if clashes:
        raise PurifyError(
            f"{kind} '{item.name}' from {package} declares option(s) {', '.join(clashes)} that "
            f"the host already provides; rename them in the plugin"
        )


def registered(kind: str, name: str, manager: pluggy.PluginManager | None = None) -> Registered:
    """The registration of `name` (the item, its package and version), or an error that lists
    what is installed: the one place a plugin name given by a user is resolved."""
    registry = collect(kind, manager)
    if name not in registry:
        known = ", ".join(sorted(registry)) or "(none installed)"
        raise PurifyError(f"unknown {kind} '{name}'; installed: {known} (see `purify plugins`)")
    return registry[name]


def lookup(kind: str, name: str, manager: pluggy.PluginManager | None = None) -> Any:
    """The registered item itself; see `registered`."""
    return registered(kind, name, manager).item
