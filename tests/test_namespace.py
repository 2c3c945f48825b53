"""One import package, `purify_backdoor`, over the design card's folders: no file still uses the
old top-level names, the wheel installs exactly one package, and every plugin module is an entry
point."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
OLD = ("plugins", "adapters", "medic_plugin", "unlearn_plugin", "compact_plugin")
OLD_IMPORT = re.compile(rf"^\s*(?:from|import)\s+({'|'.join(OLD)})(?:\.\w+)*(?:\s|$)", re.M)
OLD_DOTTED = re.compile(rf"^({'|'.join(OLD)})\.[a-z_]")
OLD_TEXT = re.compile(
    rf"python -m ({'|'.join(OLD)})\b|[\"'`]({'|'.join(OLD)})\.[a-z_]+[\"'`:]"
    rf"|^\s*(?:from|import)\s+({'|'.join(OLD)})(?:\.\w+)*(?:\s|$)",
    re.M,
)


def project_files(*suffixes: str) -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return [ROOT / name for name in listed if name.endswith(suffixes) and (ROOT / name).is_file()]


def old_names_in_python(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in OLD]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [node.module] if node.module.split(".")[0] in OLD else []
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += [node.value] if OLD_DOTTED.match(node.value) else []
        elif isinstance(node, ast.List | ast.Tuple):  # ["-m", "plugins"]
            values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
            pairs = zip(values, values[1:], strict=False)
            found += [f"-m {v}" for a, v in pairs if a == "-m" and v in OLD]
    return [f"{path.name}: {name}" for name in found]


def test_no_python_file_uses_an_old_top_level_name():
    found = [hit for path in project_files(".py") for hit in old_names_in_python(path)]
    assert found == []


def test_no_doc_or_config_file_uses_an_old_top_level_name():
    found = [
        f"{path.relative_to(ROOT)}: {match.group(0).strip()}"
        for path in project_files(".md", ".toml", ".cfg", ".txt")
        for match in OLD_TEXT.finditer(path.read_text())
    ]
    assert found == []


def test_the_checks_catch_old_names(tmp_path):
    source = tmp_path / "old.py"
    source.write_text(
        "from plugins import hookimpl\nimport medic_plugin.cloning\n"
        "x = 'adapters.nad_checkpoint'\ncmd = ['-m', 'plugins']\n"
    )
    assert len(old_names_in_python(source)) == 4
    text = "```python\nfrom compact_plugin.tucker import hosvd\n```\n`python -m plugins run`"
    assert len(OLD_TEXT.findall(text)) == 2


def test_every_package_folder_is_listed():
    mapping = PYPROJECT["tool"]["setuptools"]["package-dir"]
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = set()
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *relative.parts]))
    assert listed == found


def test_every_plugin_module_has_its_entry_point():
    values = set(PYPROJECT["project"]["entry-points"]["purify"].values())
    modules = {
        f"purify_backdoor.{package}.{path.stem}"
        for package, folder in (("builtin", "plugins/builtin"), ("adapters", "adapters"))
        for path in (ROOT / folder).glob("*.py")
        if path.name != "__init__.py"
    }
    packages = {"purify_backdoor.medic", "purify_backdoor.unlearn", "purify_backdoor.compact"}
    assert modules | packages <= values
    assert all(value.startswith("purify_backdoor.") for value in values)


def test_the_console_script_and_module_entry():
    assert PYPROJECT["project"]["scripts"] == {"purify": "purify_backdoor.cli:cli"}
    result = subprocess.run(
        [sys.executable, "-m", "purify_backdoor", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "purify" in result.stdout


def test_only_the_new_name_imports_outside_the_checkout(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def imports(name: str) -> bool:
        code = f"import {name}"
        return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env).returncode == 0

    assert imports("purify_backdoor.medic") and imports("purify_backdoor.adapters.state_dict")
    assert not any(imports(name) for name in OLD)


def test_the_wheel_installs_one_top_level_package(tmp_path):
    source = tmp_path / "source"  # setuptools builds in the source tree: keep the checkout clean
    junk = (".git", "build", "out", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis")
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*junk))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path),
         str(source)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top_level = next(n for n in names if n.endswith("top_level.txt"))
        assert archive.read(top_level).decode().split() == ["purify_backdoor"]
    roots = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert roots == {"purify_backdoor"}
    assert "purify_backdoor/medic/cloning.py" in names
    assert "purify_backdoor/adapters/backdoorbench.py" in names
