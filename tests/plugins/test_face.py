"""`purify_backdoor` is the whole contract a plugin sees: the shipped plugins import from it and
from their own package only, as a third-party plugin would, and every name it exports is
documented for plugin authors."""

from __future__ import annotations

import ast
from pathlib import Path

import purify_backdoor

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = {
    "plugins/builtin": "purify_backdoor.builtin",
    "adapters": "purify_backdoor.adapters",
    "medic_plugin": "purify_backdoor.medic",
    "unlearn_plugin": "purify_backdoor.unlearn",
    "compact_plugin": "purify_backdoor.compact",
}


def reaches_past_the_face(path: Path, own: str) -> list[str]:
    """Imports of purify_backdoor that are neither the face's exported names nor the plugin's own
    package, anywhere in the file (function-level imports included)."""
    wrong = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            wrong += [a.name for a in node.names if a.name.startswith("purify_backdoor")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "purify_backdoor":
                wrong += [a.name for a in node.names if a.name not in purify_backdoor.__all__]
            elif node.module.startswith("purify_backdoor.") and not (
                node.module == own or node.module.startswith(own + ".")
            ):
                wrong.append(node.module)
    return [f"{path.parent.name}/{path.name}: {name}" for name in wrong]


def test_the_names_a_plugin_needs_import_from_the_package():
    from purify_backdoor import Defense, ImageSet, PurifyError, TriggeredSet, hookimpl

    assert hookimpl.project_name == "purify"
    assert {Defense, ImageSet, PurifyError, TriggeredSet}
    assert all(hasattr(purify_backdoor, name) for name in purify_backdoor.__all__)


def shipped_sources(folder: str) -> list[Path]:
    """Every Python file of a shipped plugin's package, its subpackages (adapters/trojai/)
    included."""
    return sorted((ROOT / folder).rglob("*.py"))


def test_shipped_plugins_import_only_the_face():
    found = [
        hit
        for folder, own in SHIPPED.items()
        for path in shipped_sources(folder)
        for hit in reaches_past_the_face(path, own)
    ]
    assert found == []


def test_the_walk_reaches_subpackages():
    assert ROOT / "adapters" / "trojai" / "rounds.py" in shipped_sources("adapters")


def test_the_check_catches_an_internal_import(tmp_path):
    source = tmp_path / "plugin.py"
    source.write_text(
        "from purify_backdoor import fit, _secret\n"
        "def run():\n    from purify_backdoor.training import workdir_for\n"
        "from purify_backdoor.medic.cloning import clone_model\n"
    )
    found = sorted(hit.split(": ")[1] for hit in reaches_past_the_face(source, "x"))
    assert found == ["_secret", "purify_backdoor.medic.cloning", "purify_backdoor.training"]


def test_every_exported_name_is_documented_for_plugin_authors():
    guide = (ROOT / "docs" / "writing-plugins.md").read_text()
    missing = [name for name in purify_backdoor.__all__ if f"`{name}" not in guide]
    assert missing == []
