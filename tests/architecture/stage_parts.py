"""Reach-ins on another plugin's stage object, read from the source: any attribute of
``other_stage(app)`` or ``find_stage(app, OtherStage)`` (directly or through a name bound to it), be
it a part (``.resolver.session``), a setting (``.config.provider``), a part bound to a name
(``sessions = other_stage(app).sessions``) or a method (``.identify(request)``). A stage and its parts
are its own plugin's; other plugins use the functions its package exports."""

from __future__ import annotations

import ast


def _foreign_names(tree: ast.Module, owner: str) -> set[str]:
    """Local names imported from another plugin's package."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] == "plugins" and len(parts) > 1 and f"plugins.{parts[1]}" != owner:
                names.update(alias.asname or alias.name for alias in node.names)
    return names


def _is_stage(node: ast.expr, foreign: set[str], bound: set[str]) -> bool:
    """Whether ``node`` evaluates to another plugin's stage object."""
    if isinstance(node, ast.Name):
        return node.id in bound
    if not isinstance(node, ast.Call):
        return False
    if isinstance(node.func, ast.Name) and node.func.id in foreign and node.func.id.endswith("_stage"):
        return True  # auth_stage(app)
    return any(  # find_stage(app, AuthStage)
        isinstance(arg, ast.Name) and arg.id in foreign and arg.id.endswith("Stage") for arg in node.args
    )


def reach_ins(source: str, owner: str) -> list[tuple[int, str]]:
    """``(line, expression)`` of every reach-in of module ``source`` of plugin ``owner``
    (e.g. ``"plugins.sandbox_router"``) into another plugin's stage."""
    tree = ast.parse(source)
    foreign = _foreign_names(tree, owner)
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if _is_stage(node.value, foreign, set()):
                bound.update(t.id for t in targets if isinstance(t, ast.Name))
    return sorted(
        (node.lineno, ast.unparse(node))
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and _is_stage(node.value, foreign, bound)
    )
