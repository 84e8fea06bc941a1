"""The shape of the package, as ARCHITECTURE.md promises it: packages depend one way (the layer
table below, mirrored in ARCHITECTURE.md's "Layers"), no import circle among personae's modules (a
function-level import counts: it only hides one), and no module over 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parent.parent / "personae"
MAX_LINES = 500

# The layers, lowest first. A module may import its own package and any package of a LOWER layer;
# never one of its own layer (siblings stay independent) nor one above. "personae" stands for the
# top-level modules (errors, limits, words …). New capabilities are packages above the
# orchestrator (APPS); a package missing from the table is placed there, since that is where the
# house rules put new ones — the library below can then never import it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("personae",),
    ("personae.llm",),
    ("personae.store", "personae.config"),
    ("personae.replies", "personae.memory", "personae.quality"),
    ("personae.orchestrator",),
    APPS := ("personae.run_format", "personae.doctor", "personae.eval", "personae.batch",
             "personae.importers"),
    # The viewer shows what the capability packages store (a batch's report, an eval's), through
    # their own readers, so it sits above them; nothing but the CLI imports it.
    ("personae.web",),
    ("personae.cli",),
    ("personae.__main__",),
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def import_graph() -> nx.DiGraph:
    """Module → the personae modules it imports, wherever in the file the import stands."""
    modules = _modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            for target in targets:
                if target in modules and target != name:
                    graph.add_edge(name, target)
    return graph


def package_of(module: str) -> str:
    """``personae.store.repo`` → ``personae.store``; a top-level module is its own package, except
    the plain library modules (errors, limits …), which form the bottom layer ``personae``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "personae"
    top = ".".join(parts[:2])
    if len(parts) == 2 and not (PACKAGE / parts[1]).is_dir() and top not in _LISTED:
        return "personae"
    return top


_LISTED = {name for layer in LAYERS for name in layer}


def layer_of(package: str) -> int:
    for index, layer in enumerate(LAYERS):
        if package in layer:
            return index
    return LAYERS.index(APPS)


def upward_imports(graph: nx.DiGraph) -> list[str]:
    """Every import from one package to another that is not strictly below it."""
    found = []
    for source, target in graph.edges:
        here, there = package_of(source), package_of(target)
        if here != there and layer_of(there) >= layer_of(here):
            found.append(f"{source} → {target} ({here} may not import {there})")
    return sorted(found)


def test_packages_depend_one_way() -> None:
    assert upward_imports(import_graph()) == []


def test_the_layer_check_sees_an_upward_import() -> None:
    """The check above could pass by seeing nothing; an added upward edge must be found, and so
    must an import between two packages of the same layer."""
    graph = import_graph()
    graph.add_edge("personae.config.models", "personae.replies.parsing")
    graph.add_edge("personae.store.repo", "personae.config.models")
    assert upward_imports(graph) == [
        "personae.config.models → personae.replies.parsing (personae.config may not import personae.replies)",
        "personae.store.repo → personae.config.models (personae.store may not import personae.config)",
    ]
    assert package_of("personae.errors") == "personae"
    assert package_of("personae.doctor") == "personae.doctor"
    assert layer_of("personae.cli") > layer_of("personae.orchestrator") > layer_of("personae.store")


def test_every_package_is_in_the_layer_table() -> None:
    """A new package lands above the orchestrator by default; listing it keeps the map honest."""
    packages = {package_of(name) for name in _modules()}
    assert packages - _LISTED == set(), "add these packages to LAYERS and to ARCHITECTURE.md"


def test_no_import_circles() -> None:
    cycles = list(nx.simple_cycles(import_graph()))
    assert cycles == [], f"import circles: {cycles}"


def test_the_graph_sees_imports() -> None:
    """The check above could pass on a graph with no edges; this one cannot."""
    graph = import_graph()
    assert graph.has_edge("personae.orchestrator.run", "personae.orchestrator.calls")
    assert graph.has_edge("personae.orchestrator.policies", "personae.orchestrator.policies.router")


def test_no_module_over_500_lines() -> None:
    long = {
        str(path.relative_to(PACKAGE.parent)): lines
        for path in PACKAGE.rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}
