"""The public surface: ``tracer/__init__.py`` only imports and lists a sorted, complete ``__all__``."""

from __future__ import annotations

import ast
import types
from pathlib import Path

import tracer
from tracer import _schema

from ..conftest import Recorder

INIT = Path(tracer.__file__)


def test_all_is_sorted_and_lists_every_public_name() -> None:
    assert tracer.__all__ == sorted(tracer.__all__)
    public = {
        name
        for name, value in vars(tracer).items()
        if not name.startswith("_")
        and name != "annotations"  # from __future__
        and (not isinstance(value, types.ModuleType) or name in tracer.__all__)
    }
    assert public | {"__version__"} == set(tracer.__all__)


def test_the_package_init_only_imports() -> None:
    tree = ast.parse(INIT.read_text())
    kinds = {type(node).__name__ for node in tree.body}
    assert kinds <= {"Expr", "ImportFrom", "Import", "Assign"}, kinds  # docstring, imports, __all__
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
