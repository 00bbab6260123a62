"""One version range per integration, stated once (``tracer/_registry.py``): the README table, the
pyproject extras and pins, the integrations' own minimum and CI's range runs all agree with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tracer import integrations
from tracer._registry import INTEGRATIONS, Integration, version_tuple

from . import ranges

tomllib = pytest.importorskip("tomllib")  # Python 3.11+: the other CI runs check it

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]

NAMES = [entry.name for entry in INTEGRATIONS]


@pytest.mark.parametrize("entry", INTEGRATIONS, ids=NAMES)
def test_readme_table_states_the_registry_range(entry: Integration) -> None:
    oldest, newest = entry.tested
    rows = re.findall(rf"^\| `{re.escape(entry.name)}` ≥ (\S+) \(tested (\S+) and (\S+)\)", README, re.MULTILINE)
    assert rows == [(oldest, oldest, newest)], f"README row of {entry.name}: {rows}"


@pytest.mark.parametrize("entry", INTEGRATIONS, ids=NAMES)
def test_pyproject_extra_and_test_pin_match_the_range(entry: Integration) -> None:
    oldest, newest = entry.tested
    assert EXTRAS[entry.name] == [f"{entry.name}>={oldest}"]
    # The main test environment runs the newest end (the range runs test both ends again).
    pins = [requirement.split(";")[0].strip() for requirement in EXTRAS["test"]]  # markers aside
    assert f"{entry.name}=={newest}" in pins


@pytest.mark.parametrize("entry", INTEGRATIONS, ids=NAMES)
def test_the_integration_uses_the_registry_minimum_and_ci_runs_both_ends(entry: Integration) -> None:
    oldest, newest = entry.tested
    assert version_tuple(oldest) < version_tuple(newest)
    assert integrations._library(entry.name).min_version == version_tuple(oldest)
    for file in ranges.test_files(entry):
        assert (ROOT / file).is_file(), file
    assert ranges.main(["--list"]) == 0
    plan = {(e.name, version) for e in INTEGRATIONS for version in e.tested}
    assert {(entry.name, oldest), (entry.name, newest)} <= plan
    assert "tests/integrations/ranges.py" in (ROOT / ".ci" / "run").read_text()


def test_version_tuple() -> None:
    assert version_tuple("1.9.0") == (1, 9, 0)
    assert version_tuple("0.30.0rc1") == (0, 30, 0)
    assert version_tuple("2.17") == (2, 17)
