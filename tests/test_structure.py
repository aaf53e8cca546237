"""The package's shape stays as the Architecture section of the README describes it.

Counted the simple way, so that the rules cannot be argued around:

* no import cycle between modules of ``mulegraph/``: every ``import`` statement counts, inside
  functions and under ``if TYPE_CHECKING:`` too (``from pkg import name`` is an edge to ``pkg``
  and, when ``pkg.name`` is a module, to it as well);
* no ``.py`` file over 600 lines, blank and comment lines included;
* at most 8 modules directly under ``mulegraph/`` (``__init__.py`` not counted);
* at least 6 stage subpackages directly under ``mulegraph/``;
* ``cli/`` under 12% of the package's lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

PKG = Path(__file__).resolve().parents[1] / "mulegraph"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def import_graph() -> nx.DiGraph:
    """Module -> module edges for every import statement in the package."""
    mods = _modules()
    g = nx.DiGraph()
    g.add_nodes_from(mods)
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        package = name if _is_package(path) else name.rpartition(".")[0]
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                targets = [src] + [f"{src}.{a.name}" for a in node.names]
            for t in targets:
                if t in mods and t != name:
                    g.add_edge(name, t)
    return g


def test_import_graph_sees_imports():
    g = import_graph()
    assert g.has_edge("mulegraph.cli._app", "mulegraph.core.errors")
    assert g.number_of_edges() > 100


def test_no_import_cycle():
    cycles = [c for c in nx.simple_cycles(import_graph())]
    shown = "\n".join(" -> ".join(c + [c[0]]) for c in cycles[:10])
    assert not cycles, f"{len(cycles)} import cycle(s), e.g.:\n{shown}"


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG.parent)))
def test_no_module_over_600_lines(path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= 600, f"{path.relative_to(PKG.parent)} has {n} lines; split it by responsibility"


def test_few_top_level_modules_and_stage_packages():
    modules = sorted(p.name for p in PKG.glob("*.py") if p.name != "__init__.py")
    assert len(modules) <= 8, f"{len(modules)} modules directly under mulegraph/: {modules}"
    packages = sorted(p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").is_file())
    assert len(packages) >= 6, packages


def test_cli_is_a_thin_shell():
    def lines(paths):
        return sum(len(p.read_text(encoding="utf-8").splitlines()) for p in paths)

    total = lines(PKG.rglob("*.py"))
    cli = lines((PKG / "cli").rglob("*.py"))
    assert cli < 0.12 * total, f"cli/ holds {cli / total:.1%} of the package's lines"
