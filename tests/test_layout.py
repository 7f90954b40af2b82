"""The package's layout holds: every folder imports only downward, no module imports itself back
through others (lazy imports inside functions included), and the core loads without torch.

Layers, bottom to top (a module may import its own layer and the ones below):

    checks -> tasks -> models -> search -> longthought -> runtime -> config -> stages -> cli
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "journey"
LAYERS = ["checks", "tasks", "models", "search", "longthought", "runtime", "config", "stages", "cli"]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def journey_imports(path: Path) -> set[str]:
    """Every `journey.*` module `path` imports, at any depth of its code (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("journey")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("journey"):
            found.add(node.module)
            # `from journey.tasks import code` names a module too
            found |= {f"{node.module}.{a.name}" for a in node.names
                      if (PACKAGE.parent / f"{node.module}.{a.name}".replace(".", "/")).with_suffix(".py").exists()}
    return found


def layer(module: str) -> int:
    """journey.stages.derive -> the index of 'stages'; journey (the package itself) -> 0."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 else 0


def import_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    for name, path in modules.items():
        graph.add_node(name)
        for target in journey_imports(path):
            if target in modules and target != name:
                graph.add_edge(name, target)
    return graph


def test_the_layers_cover_every_folder_and_top_level_module():
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
            if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__init__")}
    assert tops == set(LAYERS), tops ^ set(LAYERS)


def test_no_module_imports_upward():
    upward = [(a, b) for a, b in import_graph().edges if layer(b) > layer(a)]
    assert not upward, "\n".join(f"{a} imports {b}" for a, b in upward)


def test_no_import_circle():
    graph = import_graph()
    # a package's __init__ importing its own modules is how a package exports; not a circle
    graph.remove_edges_from([(a, b) for a, b in list(graph.edges) if b.startswith(a + ".")])
    circles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert not circles, circles


def test_the_checker_sees_lazy_and_upward_imports(tmp_path):
    """The walk reads imports inside functions, so a lazy upward import would be caught."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from journey.stages.derive import run_derive\n    import journey.cli\n")
    assert journey_imports(f) == {"journey.stages.derive", "journey.cli"}
    assert layer("journey.stages.derive") > layer("journey.search.tree")


@pytest.mark.parametrize("module", ["journey.search.build", "journey.search.mcts", "journey.search.registry",
                                    "journey.longthought.render", "journey.longthought.paths",
                                    "journey.models.base", "journey.models.registry", "journey.config",
                                    "journey.cli"])
def test_the_core_and_the_cli_load_without_torch(module):
    code = f"import sys, {module}; sys.exit('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"importing {module} loads torch\n{result.stderr[-1500:]}"



TESTS = ROOT / "tests"


def imported_test_modules(path: Path) -> set[str]:
    """The `tests.test_*` modules `path` imports, at any depth of its code (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from tests import test_x`
    return {m for m in found if m.startswith("tests.test_") and m.count(".") == 1}


def test_no_test_module_imports_another(tmp_path):
    """Shared pieces live in tests/helpers.py (plain functions and data) and tests/conftest.py
    (fixtures): a test module imports neither another test module nor its helpers."""
    probe = tmp_path / "test_probe.py"
    probe.write_text("import tests.test_a\nfrom tests import test_b, helpers\n"
                     "def f():\n    from tests.test_c import g\n")
    assert imported_test_modules(probe) == {"tests.test_a", "tests.test_b", "tests.test_c"}
    found = {p.name: sorted(imported_test_modules(p)) for p in sorted(TESTS.glob("test_*.py"))}
    assert len(found) > 20
    importing = {name: mods for name, mods in found.items() if mods}
    assert not importing, importing
