"""The layout is the architecture: lower layers never import higher ones, nothing imports in a
circle, modules stay small. Read from the source with `ast` (every import counts: at module
level, inside functions and under ``TYPE_CHECKING``), so a violation fails here before review.

The layers are documented in ``syncd/__init__.py``; this list is their executable form.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOTS = {"syncd": REPO / "syncd", "syncd_connectors": REPO / "connectors" / "syncd_connectors"}

#: Lowest first. A module belongs to the first entry whose prefix names it or its package.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("plugin API", ("syncd.model", "syncd.redact", "syncd.errors", "syncd.net",
                    "syncd.checks", "syncd.secrets", "syncd.log", "syncd.connector",
                    "syncd.registry", "syncd.testing", "syncd.spill")),
    ("mapping", ("syncd.mapping",)),
    ("state", ("syncd.state",)),
    ("config", ("syncd.config",)),
    ("plan", ("syncd.plan",)),
    ("cycle", ("syncd.cycle",)),
    ("daemon", ("syncd.daemon",)),
    ("cli", ("syncd.cli", "syncd.__main__")),
)
#: Connectors see syncd only through the plugin API.
CONNECTORS_MAY_USE = LAYERS[0][1]
MAX_LINES = 420  # "~400": a module past this wants splitting
BAD_NAMES = ("2.py", "_ops.py", "_state.py")


def modules() -> dict[str, Path]:
    out = {}
    for pkg, root in ROOTS.items():
        for path in root.rglob("*.py"):
            parts = (pkg, *path.relative_to(root).with_suffix("").parts)
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def imports(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """The known modules `name` imports (``from pkg import module`` resolves to the module)."""
    known = set(known)
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {m for m in out if m in known and m != name}


def layer(name: str) -> int | None:
    for i, (_label, prefixes) in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return i
    return None


def violations(graph: Mapping[str, set[str]]) -> list[str]:
    """Imports that go up a layer, or from a connector past the plugin API."""
    out = []
    for mod, deps in sorted(graph.items()):
        if mod == "syncd":
            continue
        for dep in sorted(deps):
            if mod.startswith("syncd_connectors"):
                if dep.startswith("syncd.") and not any(
                        dep == p or dep.startswith(p + ".") for p in CONNECTORS_MAY_USE):
                    out.append(f"{mod} -> {dep}: connectors use only the plugin API")
                continue
            if dep.startswith("syncd_connectors"):
                out.append(f"{mod} -> {dep}: syncd never imports a connector (entry points)")
                continue
            mine, theirs = layer(mod), layer(dep)
            if mine is None:
                out.append(f"{mod}: in no layer (add it to LAYERS and syncd/__init__.py)")
            elif theirs is not None and theirs > mine:
                out.append(f"{mod} ({LAYERS[mine][0]}) -> {dep} ({LAYERS[theirs][0]})")
    return out


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, mods) for name, path in mods.items()}


def test_the_tree_is_where_the_layers_say(graph: dict[str, set[str]]) -> None:
    assert "syncd.cycle.engine" in graph and "syncd_connectors.ldap.connector" in graph


def test_no_import_goes_up_a_layer(graph: dict[str, set[str]]) -> None:
    assert violations(graph) == []


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    assert cycles(graph) == []


#: Inside the LDAP connector: the wire fast path knows nothing of feeds or writes, the
#: feeds nothing of writes (see the subpackages' docstrings).
LDAP_FORBIDDEN = {
    "syncd_connectors.ldap.wire": ("syncd_connectors.ldap.feeds", "syncd_connectors.ldap.write",
                                   "syncd_connectors.ldap.connector"),
    "syncd_connectors.ldap.feeds": ("syncd_connectors.ldap.write",
                                    "syncd_connectors.ldap.connector"),
    "syncd_connectors.ldap.write": ("syncd_connectors.ldap.feeds",
                                    "syncd_connectors.ldap.connector"),
}


def test_ldap_subpackages_keep_their_direction(graph: dict[str, set[str]]) -> None:
    bad = [f"{mod} -> {dep}" for mod, deps in graph.items() for dep in deps
           for pkg, banned in LDAP_FORBIDDEN.items()
           if mod.startswith(pkg) and dep.startswith(banned)]
    assert bad == []


def test_modules_are_small_and_plainly_named() -> None:
    big = {str(p.relative_to(REPO)): n for p in modules().values()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert big == {}
    assert [str(p) for p in modules().values() if p.name.endswith(BAD_NAMES)] == []


def test_the_checks_catch_what_they_are_for() -> None:
    """The checker on a made-up graph: an upward import, a connector reaching past the plugin
    API, and a cycle are each reported."""
    graph = {
        "syncd.plan.push": {"syncd.cycle.apply", "syncd.model"},
        "syncd.cycle.apply": {"syncd.plan.push"},
        "syncd_connectors.x.connector": {"syncd.state.store", "syncd.errors"},
    }
    assert violations(graph) == [
        "syncd.plan.push (plan) -> syncd.cycle.apply (cycle)",
        "syncd_connectors.x.connector -> syncd.state.store: connectors use only the plugin API",
    ]
    assert cycles(graph) == [["syncd.cycle.apply", "syncd.plan.push"]]
