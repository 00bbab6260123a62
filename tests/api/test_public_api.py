"""The public surface: ``tracer/__init__.py`` only imports and lists a sorted, complete ``__all__``."""

from __future__ import annotations

import ast
import subprocess
import sys
import types
from pathlib import Path

import pytest

import tracer
from tracer import _schema

from ..conftest import Recorder

INIT = Path(tracer.__file__)
LAZY = {"HoneyHiveExporter", "OTLPExporter"}  # module __getattr__: they import httpx


def test_all_is_sorted_and_lists_every_public_name() -> None:
    assert tracer.__all__ == sorted(tracer.__all__)
    public = {
        name
        for name, value in vars(tracer).items()
        if not name.startswith("_")
        and name != "annotations"  # from __future__
        and (not isinstance(value, types.ModuleType) or name in tracer.__all__)
    }
    assert public | {"__version__"} | LAZY == set(tracer.__all__)
    for name in tracer.__all__:
        assert getattr(tracer, name) is not None


def test_the_http_exporters_load_on_first_use() -> None:
    code = (
        "import sys, tracer; assert 'httpx' not in sys.modules; "
        "from tracer.exporters import honeyhive, otlp; "
        "assert tracer.OTLPExporter is otlp.OTLPExporter and tracer.HoneyHiveExporter is honeyhive.HoneyHiveExporter; "
        "assert 'httpx' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tracer.nope  # noqa: B018


def test_the_package_init_only_imports() -> None:
    tree = ast.parse(INIT.read_text())
    kinds = {type(node).__name__ for node in tree.body}
    # docstring, imports, typing-only imports, __all__, and the module __getattr__ that imports LAZY names
    assert kinds <= {"Expr", "ImportFrom", "Import", "Assign", "If", "FunctionDef"}, kinds
    for node in tree.body:
        if isinstance(node, ast.If):
            assert ast.unparse(node.test) == "_typing.TYPE_CHECKING"
            assert all(isinstance(child, ast.ImportFrom) for child in node.body)
        if isinstance(node, ast.FunctionDef):
            assert node.name == "__getattr__"
            assert set(ast.literal_eval(node.body[0].test.comparators[0])) == LAZY  # type: ignore[attr-defined]
    assigned = [target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets]  # type: ignore[attr-defined]
    assert assigned == ["__all__"]


def test_encoded_events_have_exactly_the_schema_fields_in_order(rec: Recorder) -> None:
    with rec.tracer.span("plain"):
        pass
    with rec.tracer.span("rich", metadata={"a": 1}) as span:
        span.update(metrics={"m": 1}, feedback={"f": 1}, user_properties={"u": 1}, config={"c": 1})
    for event in rec.events():
        assert tuple(event) == _schema.EVENT_FIELDS
        assert all(isinstance(event[name], dict) for name in _schema.BUCKETS)
