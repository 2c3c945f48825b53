"""Discovery and registries: the rules every plugin, shipped or third-party, is held to."""

import os
import subprocess
import sys
import types

import pluggy
import pytest

from purify_backdoor import Defense, Option, hookimpl
from purify_backdoor.errors import PurifyError
from purify_backdoor.manager import collect, get_manager, load_plugins, lookup, new_manager


def _defense_plugin(module_name: str, defense: Defense) -> types.ModuleType:
    module = types.ModuleType(module_name)

    @hookimpl
    def register_defenses(register):
        register(defense)

    module.register_defenses = register_defenses
    return module


def _noop(job):
    return job.model


def test_every_shipped_plugin_comes_from_the_entry_points():
    manager = get_manager()
    names = {name for name, _ in manager.list_name_plugin()}
    assert {"badnet", "backdoor_metrics", "finetune", "demo", "nad_checkpoint"} <= names
    kinds = {kind: set(collect(kind)) for kind in ("defense", "attack", "evaluator", "adapter")}
    assert "finetune" in kinds["defense"]
    assert "badnet" in kinds["attack"]
    assert "backdoor" in kinds["evaluator"]
    assert {"nad", "state_dict"} <= kinds["adapter"]
    assert collect("defense")["finetune"].package == "purify-backdoor"


def test_two_plugins_with_one_name_is_an_error_naming_both():
    manager = new_manager()
    manager.register(_defense_plugin("alpha_pkg.plugin", Defense("same", "a", _noop)))
    manager.register(_defense_plugin("beta_pkg.plugin", Defense("same", "b", _noop)))
    with pytest.raises(PurifyError, match="registered twice, by alpha_pkg and by beta_pkg"):
        collect("defense", manager)


def test_misspelled_hook_fails_check_pending():
    manager = new_manager()
    module = types.ModuleType("typo_pkg")

    @hookimpl
    def register_defences(register):  # British spelling: not a hook
        pass

    module.register_defences = register_defences
    manager.register(module)
    with pytest.raises(pluggy.PluginValidationError):
        manager.check_pending()


@pytest.mark.parametrize("name", ["seed", "save_format", "n_clean", "trust_checkpoint", "option"])
def test_option_names_that_shadow_host_flags_are_refused(name):
    import purify_backdoor.cli  # noqa: F401 - building the CLI reserves its flags' names

    manager = new_manager()
    bad = Defense("shadow", "d", _noop, options=(Option(name, int, 0, "mine"),))
    manager.register(_defense_plugin("shadow_pkg", bad))
    with pytest.raises(PurifyError, match=f"option\\(s\\) {name} that the host already provides"):
        collect("defense", manager)


def test_reserved_names_are_read_off_the_command_that_takes_the_options():
    from purify_backdoor.cli import cli, host_option_names

    run_flags = {
        flag[2:].replace("-", "_")
        for param in cli.commands["run"].base_params  # params also holds the last plugin's flags
        for flag in param.opts
        if flag.startswith("--")
    }
    assert run_flags <= host_option_names("defense")
    # the attack command's training flags bind attack options, not defense options
    assert {"epochs", "lr", "poison_ratio"} <= host_option_names("attack")
    assert not {"epochs", "lr", "test_data"} & host_option_names("defense")
    assert host_option_names("evaluator") == frozenset()


def test_one_lookup_names_what_is_installed():
    from purify_backdoor.manager import registered

    entry = registered("defense", "finetune")
    assert entry.item.name == "finetune" and entry.package == "purify-backdoor"
    with pytest.raises(PurifyError, match="unknown defense 'nope'; installed: .*finetune"):
        registered("defense", "nope")


def test_lookup_of_unknown_name_lists_installed():
    with pytest.raises(PurifyError, match="unknown defense 'nope'; installed: .*finetune"):
        lookup("defense", "nope")


def test_registering_the_wrong_type_is_caught():
    manager = new_manager()
    module = types.ModuleType("wrong_pkg")

    @hookimpl
    def register_defenses(register):
        register("not a Defense")

    module.register_defenses = register_defenses
    manager.register(module)
    with pytest.raises(TypeError, match="must register Defense"):
        collect("defense", manager)


def _installed_distribution(root, name: str, entry_point: str) -> None:
    """A package's metadata on sys.path, as pip would leave it, with one `purify` entry point."""
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[purify]\n{entry_point}\n")


def test_a_plugin_that_fails_to_import_is_a_one_line_error_naming_its_package(
    tmp_path, monkeypatch
):
    _installed_distribution(tmp_path, "broken_purify_plugin", "broken = no_such_module_xyz")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PurifyError) as raised:
        load_plugins(new_manager())
    message = raised.value.format_message()
    assert "plugin 'broken' (no_such_module_xyz) from package broken_purify_plugin" in message
    assert "ModuleNotFoundError" in message
    assert "reinstall or uninstall broken_purify_plugin" in message
    assert "\n" not in message


def test_a_plugin_with_an_unknown_hook_is_a_one_line_error(tmp_path, monkeypatch):
    (tmp_path / "typo_purify_plugin.py").write_text(
        "from plugins import hookimpl\n\n\n@hookimpl\ndef register_defences(register):\n    pass\n"
    )
    _installed_distribution(tmp_path, "typo_purify_plugin", "typo = typo_purify_plugin")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PurifyError, match="typo_purify_plugin implements a hook purify does not"):
        load_plugins(new_manager())


def test_the_cli_reports_a_broken_plugin_in_one_line(tmp_path):
    _installed_distribution(tmp_path, "broken_purify_plugin", "broken = no_such_module_xyz")
    environment = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "purify_backdoor", "plugins"],
        env=environment,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("Error: plugin 'broken'")
    assert "Traceback" not in result.stderr
