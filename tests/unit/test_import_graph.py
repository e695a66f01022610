"""No import cycle among sriovkit's modules (TYPE_CHECKING and function-level imports count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import sriovkit

SRC = Path(sriovkit.__file__).resolve().parent


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the modules of `package` it imports, from the source (nothing is imported)."""
    root = SRC.parent.joinpath(*package.split("."))
    modules = {_module(p): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                base = node.module
                if node.level:  # relative: resolve against this module's package
                    pkg = name.split(".")[: len(name.split(".")) - node.level + (
                        1 if path.name == "__init__.py" else 0)]  # fmt: skip
                    base = ".".join([*pkg, node.module])
                targets = [base, *(f"{base}.{a.name}" for a in node.names)]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first walk (each reported once, from where it was met)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_the_graph_sees_the_sysfs_package() -> None:
    graph = import_graph("sriovkit.host")
    assert "sriovkit.host.sysfs.reader" in graph["sriovkit.host.sysfs.writer"]
    assert "sriovkit.host.sysfs.pciwalk" in graph["sriovkit.host.sysfs.reader"]


def test_no_import_cycle_among_host_modules() -> None:
    # A package's __init__ re-exporting its modules is not a cycle unless a module imports it.
    graph = import_graph("sriovkit.host")
    assert cycles(graph) == []


def test_no_import_cycle_in_the_whole_package() -> None:
    # The cycles a read of the code found (cli <-> commands via CliEnv, host.pciwalk <->
    # host.sysfs, sim.veth <-> sim.veth_netlink) are gone; none may come back.
    assert cycles(import_graph("sriovkit")) == []


def test_the_cycle_finder_finds_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
