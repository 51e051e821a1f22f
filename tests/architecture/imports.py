"""The import graph of ``proxy_core`` and ``plugins``, read from the source (every ``import`` statement,
including those under ``TYPE_CHECKING`` and inside functions: a cycle hidden there is still a cycle a
reader must untangle)."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("proxy_core", "plugins", "shmastra_cloud")


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    line: int


def modules() -> dict[str, Path]:
    """Dotted name → file of every module in the packages (a package is its ``__init__``)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def edges() -> list[Edge]:
    """Every import of one of our modules by another, as the module that is really loaded: ``from
    pkg import sub`` names the submodule ``pkg.sub``, ``from pkg import Name`` the package itself."""
    known = modules()
    found: list[Edge] = []
    for module, path in known.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node.level, node.module)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in known else base)
            for target in targets:
                if target in known and target != module:
                    found.append(Edge(module, target, getattr(node, "lineno", 0)))
    return found


def cycles(graph: list[Edge]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    following: dict[str, set[str]] = {}
    for edge in graph:
        following.setdefault(edge.source, set()).add(edge.target)
        following.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(following[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(following):
        if node not in index:
            visit(node)
    return components
