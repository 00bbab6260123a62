"""The import layers of the package (README, "Layout"): no module imports one of a higher layer, and
no modules import each other in a circle, counting every import statement: at module level, inside
functions (lazy) and under ``if TYPE_CHECKING:`` (type-only).

Importing ``tracer.a.b`` also runs ``tracer/a/__init__.py``: that counts as an import of the package
``tracer.a`` too (the root ``tracer`` package is left out: every module runs it). Modules loaded by
name (``importlib.import_module``: the integrations named in ``_registry``) are not import statements
and are not seen here. Run this file with ``python tests/test_layers.py`` to print the import graph.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tracer"

# Bottom up. A module may import modules of its own layer and of the layers before it. A name
# ending in ".*" stands for every module of that package not named elsewhere (the package's
# __init__ included); a plain name for that module alone.
LAYERS: dict[str, tuple[str, ...]] = {
    "core": (
        "tracer._version",
        "tracer._errors",
        "tracer._ids",
        "tracer._clock",
        "tracer._threads",
        "tracer._schema",
        "tracer._registry",
        "tracer._config",
        "tracer._scrub",
        "tracer._capture",
        "tracer._fields",
        "tracer._deferred",
        "tracer._record",
        "tracer._span",
        "tracer._context",
        "tracer._decorators",
        "tracer._scopes",
        "tracer._lifecycle",
        "tracer._otlp_mapping",
        "tracer._propagation",
        "tracer._otel_bridge",
    ),
    "pipeline": (
        "tracer._export",
        "tracer._sessions",
        "tracer._encode",
        "tracer._http",
        "tracer._spool",
        "tracer._worker",
        "tracer._overlap",
        "tracer._pipeline",
    ),
    "exporters": ("tracer.exporters.*",),
    "store": ("tracer.store.*",),
    "tracer": (
        "tracer._tracer",
        "tracer._default",
        "tracer.testing",
        "tracer._pytest_plugin",
        "tracer.integrations",
        "tracer.integrations._patch",
        "tracer.integrations._propagate",
    ),
    "surface and tools": (
        "tracer",
        "tracer.__main__",
        "tracer.integrations.*",
        "tracer.server.*",
        "tracer.cli.*",
    ),
}

# Imports that break the rules today, each with the change that removes it. Keep this short: an
# entry that no longer matches an import fails the test, so that it is deleted with its cause.
# (The three type-only imports of Tracer by spans, decorators and scopes were the last ones; the
# Recorder interface removed them.) Entries read: (importer, imported): "the change that removes it".
ALLOWED: dict[tuple[str, str], str] = {}


# Imports forbidden although downward: (importer, or package.* for all of it) -> (imported, why).
FORBIDDEN: dict[str, tuple[str, str]] = {
    "tracer.exporters.*": ("tracer._pipeline", "exporters see only a Batch and report in ExportResult"),
    "tracer.store.*": ("tracer._pipeline", "the store's sender and spool read ExportResult, not the pipeline"),
}


class Import(NamedTuple):
    importer: str
    imported: str
    line: int
    kind: str  # "module level", "lazy", "type-only", or how the package __init__ is reached


@functools.cache
def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _targets(importer: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == "tracer"]
    if node.level:
        base = importer.split(".") if is_package else importer.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        module = ".".join(base + ([node.module] if node.module else []))
    elif node.module is not None and node.module.split(".")[0] == "tracer":
        module = node.module
    else:
        return []
    # ``from package import name``: the submodule if name is one, else the package itself.
    return [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module for alias in node.names]


def _statements(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    def visit(node: ast.AST, kind: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
        for child in ast.iter_child_nodes(node):
            child_kind = kind
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) and child in node.body:
                child_kind = "type-only"
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and kind == "module level":
                child_kind = "lazy"
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, child_kind
            yield from visit(child, child_kind)

    yield from visit(tree, "module level")


@functools.cache
def imports() -> list[Import]:
    """Every import of a module of the package by another, with the packages whose __init__ it runs."""
    known = modules()
    names = set(known)
    found: dict[tuple[str, str], Import] = {}
    for importer, path in known.items():
        is_package = path.name == "__init__.py"
        for node, kind in _statements(ast.parse(path.read_text(), str(path))):
            for target in _targets(importer, is_package, node, names):
                parts = target.split(".")
                for end in range(2, len(parts) + 1):  # the packages on the way run their __init__ first
                    imported = ".".join(parts[:end])
                    if imported not in names or imported == importer or importer.startswith(imported + "."):
                        continue
                    how = kind if end == len(parts) else f"{kind}, runs the package's __init__"
                    found.setdefault((importer, imported), Import(importer, imported, node.lineno, how))
    return sorted(found.values())


def layer_of(module: str) -> int:
    """The position of *module*'s layer in LAYERS (its exact name first, then its closest package)."""
    order = list(LAYERS)
    for index, name in enumerate(order):
        if module in LAYERS[name]:
            return index
    best: tuple[int, int] | None = None  # (depth of the package, layer)
    for index, name in enumerate(order):
        for entry in LAYERS[name]:
            package = entry.removesuffix(".*")
            if entry.endswith(".*") and (module == package or module.startswith(package + ".")):
                depth = package.count(".")
                if best is None or depth > best[0]:
                    best = (depth, index)
    if best is None:
        raise AssertionError(
            f"{module} is in no layer: add it to LAYERS in tests/test_layers.py and to README's Layout"
        )
    return best[1]


def _describe(edge: Import) -> str:
    where = modules()[edge.importer].relative_to(ROOT)
    return f"{edge.importer} imports {edge.imported} ({edge.kind}, {where}:{edge.line})"


def _cycles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, list[str]] = {}
    for edge in edges:
        graph.setdefault(edge.importer, []).append(edge.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_every_module_is_in_one_layer() -> None:
    for module in modules():
        layer_of(module)  # raises, naming the module, if it is in none
    listed = [entry for entries in LAYERS.values() for entry in entries]
    assert len(listed) == len(set(listed)), "a name is listed in two layers"
    stale = [entry for entry in listed if entry.removesuffix(".*") not in modules()]
    assert not stale, f"LAYERS names modules that do not exist: {stale}"


def test_no_module_imports_from_a_higher_layer() -> None:
    order = list(LAYERS)
    upward = []
    for edge in imports():
        low, high = layer_of(edge.importer), layer_of(edge.imported)
        if high > low and (edge.importer, edge.imported) not in ALLOWED:
            upward.append(
                f"{_describe(edge)}: the {order[low]!r} layer may not import from the {order[high]!r} layer above it"
            )
    assert not upward, "imports across the layers, upward (README, Layout):\n" + "\n".join(upward)


def test_exporters_and_the_store_do_not_reach_into_the_pipeline() -> None:
    wrong = []
    for edge in imports():
        for importer, (imported, why) in FORBIDDEN.items():
            package = importer.removesuffix(".*")
            inside = edge.importer == package or edge.importer.startswith(package + ".")
            if inside and edge.imported == imported:
                wrong.append(f"{_describe(edge)}: {why}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    edges = [edge for edge in imports() if (edge.importer, edge.imported) not in ALLOWED]
    messages = []
    for component in _cycles(edges):
        members = set(component)
        inside = [_describe(edge) for edge in edges if edge.importer in members and edge.imported in members]
        messages.append(f"{', '.join(component)} import each other in a circle:\n  " + "\n  ".join(inside))
    assert not messages, "import cycles (lazy and type-only imports count too):\n" + "\n".join(messages)


def test_every_allowed_exception_still_exists() -> None:
    edges = {(edge.importer, edge.imported) for edge in imports()}
    gone = [f"{a} -> {b} ({why})" for (a, b), why in ALLOWED.items() if (a, b) not in edges]
    assert not gone, f"these imports are gone: delete them from ALLOWED in tests/test_layers.py: {gone}"


def _readme_layers() -> dict[str, list[str]]:
    """The layers as the README's Layout section lists them: one bullet each, its bold name first,
    then the module paths (relative to ``tracer/``; ``name/`` for a package) in backticks."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    layers: dict[str, list[str]] = {}
    for bullet in re.split(r"\n(?=- \*\*)", section):
        heading = re.match(r"- \*\*(?:\d+\. )?([^*]+?)\.?\*\*", bullet)
        if heading:
            text = bullet.split("\n\n", 1)[0]
            layers[heading.group(1).lower()] = re.findall(r"`([\w/]+(?:\.py|/))`", text)
    return layers


def _dotted(path: str) -> str:
    """``store/spool.py`` -> ``tracer.store.spool``; ``exporters/`` -> ``tracer.exporters.*``."""
    name = ".".join(["tracer", *path.removesuffix("/").removesuffix(".py").split("/")]).removesuffix(".__init__")
    return name + ".*" if path.endswith("/") else name


def test_the_readme_lists_the_same_layers() -> None:
    readme = _readme_layers()
    assert list(readme) == list(LAYERS), f"README Layout's layers {list(readme)} differ from {list(LAYERS)}"
    order = list(LAYERS)
    for name, paths in readme.items():
        mentioned = {_dotted(path) for path in paths}
        for entry in mentioned:
            if entry.endswith(".*"):
                assert entry in LAYERS[name], f"README puts {entry} in the {name!r} layer; LAYERS does not"
            else:
                assert entry in modules(), f"README's {name!r} layer names {entry}, which does not exist"
                where = order[layer_of(entry)]
                assert where == name, f"README puts {entry} in the {name!r} layer; LAYERS in {where!r}"
        missing = [entry for entry in LAYERS[name] if entry not in mentioned]
        assert not missing, f"README's {name!r} layer does not list {missing}"


def main() -> None:
    """Print the import graph: one line per import, upward ones marked; then the cycles."""
    edges = imports()
    for edge in edges:
        marks = []
        if layer_of(edge.imported) > layer_of(edge.importer):
            marks.append("UPWARD")
        if (edge.importer, edge.imported) in ALLOWED:
            marks.append("allowed for now")
        print(f"{edge.importer} -> {edge.imported} [{edge.kind}]" + (f"  {', '.join(marks)}" if marks else ""))
    for component in _cycles(edges):
        print("cycle, counting the allowed imports:", ", ".join(component))
    for component in _cycles([edge for edge in edges if (edge.importer, edge.imported) not in ALLOWED]):
        print("cycle:", ", ".join(component))


if __name__ == "__main__":
    main()
