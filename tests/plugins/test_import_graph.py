"""The package's modules import each other without a circle (function-level imports count: they
run too), and importing the face loads neither the CLI nor the zoo, the executors or Ray."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name, from pyproject's folder map."""
    folders = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    found: dict[str, Path] = {}
    for package, folder in sorted(folders.items(), key=lambda item: -len(item[0])):
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            name = ".".join(
                [package, *parts[:-1]] if parts[-1] == "__init__" else [package, *parts]
            )
            found.setdefault(name, path)
    return found


def imported(path: Path, known: set[str]) -> set[str]:
    """The package modules a file imports, anywhere but under `if TYPE_CHECKING:`; `from pkg
    import mod` is an import of `pkg.mod`, not of the package's face."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(node)
        for branch in ast.walk(tree)
        if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
        for node in ast.walk(branch)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in known:
            submodules = {f"{node.module}.{a.name}" for a in node.names} & known
            found |= submodules if len(submodules) == len(node.names) else {node.module}
            found |= submodules
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported(path, set(found)) - {name} for name, path in found.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(edges[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


def test_the_import_graph_has_no_circle():
    edges = graph()
    assert "purify_backdoor.cli" in edges and len(edges) > 50
    assert circles(edges) == []
    assert "purify_backdoor.cli" not in edges["purify_backdoor.manager"]


def test_the_check_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_importing_the_face_loads_no_cli_zoo_executors_or_ray():
    code = (
        "import json, sys; from purify_backdoor import Defense, hookimpl; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                       text=True, check=True).stdout)  # fmt: skip
    heavy = ("purify_backdoor.cli", "purify_backdoor.zoo", "purify_backdoor.executors", "ray")
    assert [name for name in loaded if name.startswith(heavy)] == []
    assert "purify_backdoor.purification" not in loaded


def test_the_library_calls_load_on_first_use():
    code = "import purify_backdoor as p; print(p.run_zoo.__module__, p.defend.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["purify_backdoor.zoo.pipeline", "purify_backdoor.in_memory"]
