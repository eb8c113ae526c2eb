"""The import graph of attribkit has no cycle, and the CLI is the top floor.

The graph is read from the source with :mod:`ast`; nothing is imported. Its
nodes are the modules of ``attribkit`` and of the plugin packages in
``plugins/`` (a package is its ``__init__``). Its edges are every ``import`` and
``from ... import`` statement, at module level or inside a function or class:

- ``import attribkit.torch.cam`` is an edge to ``attribkit.torch.cam``;
- ``from attribkit.torch import capture`` is an edge to the submodule
  ``attribkit.torch.capture``, ``from attribkit.torch import resolve_layer`` one
  to the package ``attribkit.torch``; relative imports are resolved;
- ``from attribkit import explain`` is an edge to the module that defines the
  lazily exported name (``attribkit._EXPORTS``), here ``attribkit.api``.

Not edges: imports under ``if TYPE_CHECKING:`` (they never run); the implicit
import of the parent packages' ``__init__`` that every import of a submodule
makes; run-time imports by name (``importlib.import_module``, ``"module:attr"``
factories of method specs), which the registry and the host resolve on use.

A plugin package may import attribkit and itself; attribkit imports no plugin.
"""

from __future__ import annotations

import ast
import itertools
from collections import deque
from pathlib import Path

import attribkit

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = {path.parent.name: path.parent for path in (ROOT / "plugins").glob("*/*/__init__.py")}
PACKAGES = {"attribkit": ROOT / "attribkit", **PLUGINS}
TOP_FLOOR = "attribkit.cli"

Graph = dict[str, dict[str, str]]  # module -> {imported module: "file:line: statement"}


def package_modules(name: str, folder: Path) -> dict[str, Path]:
    """Dotted name -> source file of every module of package ``name`` in ``folder``."""
    found = {}
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(folder).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join((name, *parts))] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    """Whether an ``if`` tests ``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Imports(ast.NodeVisitor):
    """Collects ``(statement, base module, imported names)`` for every import that can run."""

    def __init__(self, package: str) -> None:
        self.package = package  # where relative imports start
        self.found: list[tuple[ast.stmt, str, tuple[str, ...]]] = []

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((node, alias.name, ()))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.package.split(".")
            anchor = ".".join(parts[:len(parts) - node.level + 1])
            base = f"{anchor}.{base}" if base else anchor
        self.found.append((node, base, tuple(alias.name for alias in node.names)))


def _targets(base: str, names: tuple[str, ...], known: set[str], exports: dict[str, str]) -> set[str]:
    """The known modules one import statement loads (see the module docstring)."""
    if not names:
        return {base} & known
    targets = set()
    for name in names:
        if f"{base}.{name}" in known:
            targets.add(f"{base}.{name}")
        elif name in exports.get(base, {}):
            targets.add(exports[base][name])
        elif base in known:
            targets.add(base)
    return targets


def import_graph(packages: dict[str, Path], exports: dict[str, dict[str, str]]) -> Graph:
    """The graph of ``packages`` (name -> folder); ``exports`` maps a package to its
    lazily exported names and the modules defining them."""
    files = {module: (path, path.relative_to(folder.parent))
             for name, folder in packages.items()
             for module, path in package_modules(name, folder).items()}
    graph: Graph = {}
    for module, (path, label) in files.items():
        source = path.read_text()
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        collector = _Imports(package)
        collector.visit(ast.parse(source, str(path)))
        graph[module] = {}
        for node, base, names in collector.found:
            where = f"{label}:{node.lineno}: "
            statement = " ".join(ast.get_source_segment(source, node).split())
            for target in sorted(_targets(base, names, set(files), exports) - {module}):
                graph[module].setdefault(target, where + statement)
    return graph


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's algorithm: the strongly connected components of more than one node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = stack[stack.index(node):]
            del stack[stack.index(node):]
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def shortest_cycle(graph: Graph, component: list[str], start: str) -> list[str]:
    """The shortest path ``start -> ... -> start`` inside ``component`` (breadth first)."""
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for succ in sorted(graph[node]):
            if succ == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return path[::-1] + [start]
            if succ in component and succ not in previous:
                previous[succ] = node
                queue.append(succ)
    raise ValueError(f"{start} is on no cycle of {component}")


def cycles(graph: Graph) -> list[list[str]]:
    """One shortest cycle through each module of each strongly connected component,
    without repeats, each starting at its smallest module."""
    found = []
    for component in strongly_connected(graph):
        for start in component:
            ring = shortest_cycle(graph, component, start)[:-1]
            first = ring.index(min(ring))
            ring = ring[first:] + ring[:first]
            if ring + ring[:1] not in found:
                found.append(ring + ring[:1])
    return found


def describe(graph: Graph, cycle: list[str]) -> str:
    """``a -> b -> a`` followed by the import line of each edge."""
    lines = [" -> ".join(cycle)]
    lines += [f"    {graph[a][b]}" for a, b in itertools.pairwise(cycle)]
    return "\n".join(lines)


GRAPH = import_graph(PACKAGES, {"attribkit": attribkit._EXPORTS})


def test_the_graph_reads_the_package():
    assert len([m for m in GRAPH if m.startswith("attribkit.")]) > 50
    assert set(PLUGINS) == {"attribkit_captum", "attribkit_example", "attribkit_jax", "attribkit_keras"}
    assert TOP_FLOOR in GRAPH["attribkit.__main__"]
    assert "attribkit.torch.capture" in GRAPH["attribkit.torch"]


def test_no_import_cycle():
    found = cycles(GRAPH)
    assert not found, "import cycles:\n" + "\n".join(describe(GRAPH, c) for c in found)


def test_nothing_imports_the_cli():
    importers = {m: targets[TOP_FLOOR] for m, targets in GRAPH.items()
                 if TOP_FLOOR in targets and m != "attribkit.__main__"}
    assert not importers, "the CLI is the top floor, yet imported by:\n" + "\n".join(
        f"    {line}" for line in importers.values())


def test_plugins_import_only_attribkit_and_attribkit_no_plugin():
    def owner(module: str) -> str:
        return module.partition(".")[0]

    crossing = [line for module, targets in GRAPH.items() for target, line in targets.items()
                if owner(target) not in {owner(module), "attribkit"}]
    assert not crossing, "imports across plugin packages or into a plugin:\n" + "\n".join(crossing)


# ------------------------------------------------------ the graph and the finder


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def test_every_kind_of_import_is_an_edge(tmp_path):
    write(tmp_path / "pkg", {
        "__init__.py": "",
        "a.py": "from . import b\nfrom .sub import c\n",
        "b.py": "def f():\n    import pkg.sub.d\n    from pkg import lazy\n",
        "sub/__init__.py": "from .c import helper\n",
        "sub/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n"
                    "else:\n    from ..b import f\n",
        "sub/d.py": "import os, pkg.a as a\nclass K:\n    from .. import nowhere\n",
    })
    graph = import_graph({"pkg": tmp_path / "pkg"}, {"pkg": {"lazy": "pkg.sub.d"}})
    assert {m: set(t) for m, t in graph.items()} == {
        "pkg": set(),
        "pkg.a": {"pkg.b", "pkg.sub.c"},
        "pkg.b": {"pkg.sub.d"},
        "pkg.sub": {"pkg.sub.c"},
        "pkg.sub.c": {"pkg.b"},
        "pkg.sub.d": {"pkg.a", "pkg"},
    }
    assert graph["pkg.b"]["pkg.sub.d"] == "pkg/b.py:2: import pkg.sub.d"
    # the function-level import of b.py closes both cycles
    assert [" -> ".join(c) for c in cycles(graph)] == [
        "pkg.a -> pkg.b -> pkg.sub.d -> pkg.a",
        "pkg.a -> pkg.sub.c -> pkg.b -> pkg.sub.d -> pkg.a",
    ]


def test_cycle_finder_on_a_fake_graph():
    edges = {"a": "b", "b": "cd", "c": "a", "d": "", "e": "f", "f": "eg", "g": "h", "h": ""}
    graph = {node: {succ: f"{node} imports {succ}" for succ in succs} for node, succs in edges.items()}
    assert strongly_connected(graph) == [["a", "b", "c"], ["e", "f"]]
    assert cycles(graph) == [["a", "b", "c", "a"], ["e", "f", "e"]]
    assert describe(graph, ["e", "f", "e"]) == "e -> f -> e\n    e imports f\n    f imports e"
    del graph["c"]["a"]
    assert cycles(graph) == [["e", "f", "e"]]
